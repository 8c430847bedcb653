"""longpos.data"""
