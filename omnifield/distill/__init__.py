"""omnifield.distill"""
