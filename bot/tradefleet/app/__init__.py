"""tradefleet.app"""
