"""longpos.viz"""
