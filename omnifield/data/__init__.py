"""omnifield.data"""
