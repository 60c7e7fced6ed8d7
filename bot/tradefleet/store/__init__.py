"""tradefleet.store"""
