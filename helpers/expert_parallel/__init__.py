"""Expert parallelism (DeepSeek-V3 §2.1.2, §3.2): one MoE layer's routed experts spread over ranks.

``layer`` runs the layer on spawned ``torch.distributed`` ranks; ``traffic`` counts what crosses ranks and
nodes and routes node-limited; ``schedules`` computes overlap and pipeline schedules in time units."""

from .layer import (  # noqa: F401  (the package's face: helpers.expert_parallel.X as before)
    WHERE,
    EPRun,
    ExpertParallelError,
    all_to_all,
    ep_forward,
    ep_layer,
    ep_run,
    exchange_counts,
    free_port,
    max_world_size,
    pick_backend,
)
from .schedules import (  # noqa: F401  (the package's face: helpers.expert_parallel.X as before)
    Slot,
    dualpipe_bubble,
    makespan,
    one_f_one_b,
    pipeline_bubble,
    two_stream_schedule,
)
from .traffic import (  # noqa: F401  (the package's face: helpers.expert_parallel.X as before)
    Traffic,
    expert_ranks,
    node_limited_topk,
    rank_loads,
    token_ranks,
    traffic,
)
