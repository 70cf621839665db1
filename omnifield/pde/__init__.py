"""omnifield.pde"""
