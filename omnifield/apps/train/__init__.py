"""``omnifield train``: one command for every method, dispatched to the radiance-field or splat trainer."""
