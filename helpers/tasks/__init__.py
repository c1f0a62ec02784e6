"""The tasks the lessons train on beyond the byte corpus (``helpers.data``): ``arith`` (lesson 08's
verifiable addition, its reward and SFT rows), ``heldout`` (its problems no training stage sees) and
``recall`` (lessons 02/03's multi-query associative recall, where the K/V cache binds)."""
