"""tradefleet.coord"""
