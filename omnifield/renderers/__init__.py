"""omnifield.renderers"""
