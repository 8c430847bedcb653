"""longpos.positions"""
