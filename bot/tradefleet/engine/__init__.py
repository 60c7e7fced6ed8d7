"""tradefleet.engine"""
