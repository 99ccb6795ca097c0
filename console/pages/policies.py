"""(being built)"""
routes: list = []
