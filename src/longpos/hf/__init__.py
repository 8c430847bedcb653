"""longpos.hf"""
