"""omnifield.io"""
