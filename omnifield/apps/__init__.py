"""omnifield.apps"""
