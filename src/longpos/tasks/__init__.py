"""longpos.tasks"""
