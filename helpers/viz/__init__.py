"""Pictures: live widgets with their static twins, the training dashboard, the block diagram, and the
one palette every lesson draws with."""
