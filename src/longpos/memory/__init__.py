"""longpos.memory"""
