"""What the user keeps: the session's state, project folders on disk, their schema and lock.
"""
