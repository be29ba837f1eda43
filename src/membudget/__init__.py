"""membudget: where should the bytes go?"""
