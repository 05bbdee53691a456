"""What one exchange says: bodies, streams, operations, usage, tokens, errors, content, caller.

And the order-independent join of a call's fragments.
"""
