"""longpos.eval"""
