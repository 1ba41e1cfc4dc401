"""Step pipelines (Durable's model, seed 003; issue 18): an ordered list of
`async def step(ctx, data) -> data`, the context saved after every step, durable step
retries, compensations, children, waits, human input, branches, parallel blocks and
named queues. Runs as a code workflow (flowactors.code).

    from flowactors.steps import Pipelines, StepRetry, steps

    pipeline = steps("process_order")

    @pipeline.step
    async def validate(ctx, data):
        return {**data, "order_id": ctx.input["id"]}

    @pipeline.step(retry=StepRetry(max_attempts=5, backoff="exponential"), compensate=refund)
    async def charge(ctx, data): ...

    runs = Pipelines(engine, [pipeline])
    await runs.start(pipeline, "order-1", {"id": "order-1"})
    async with runs.running():
        print(await runs.result("order-1"))

See docs/steps.md.
"""

from ._client import PendingInput, PipelineRun, Pipelines
from ._pipeline import Err, Ok, Pipeline, StepContext, StepFailed, StepRetry, goto, steps

__all__ = [
    "Err",
    "Ok",
    "PendingInput",
    "Pipeline",
    "PipelineRun",
    "Pipelines",
    "StepContext",
    "StepFailed",
    "StepRetry",
    "goto",
    "steps",
]
