"""tradefleet.web"""
