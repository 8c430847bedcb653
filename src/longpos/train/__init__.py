"""longpos.train"""
