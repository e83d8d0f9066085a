package dev.morastream.models.train;

/**
 * The outcome of one {@link IncrementalTrainer#step} call.
 *
 * @param step optimizer steps done after this call
 * @param microStep micro-batches seen after this call
 * @param lossBefore mean loss on this batch before the update (progressive validation)
 * @param lossAfter mean loss on this batch after the update, NaN when not measured or not updated
 * @param lr learning rate of the update (0 when none happened)
 * @param gradNorm global gradient norm before clipping (NaN when no update happened)
 * @param updated whether this call ended an accumulation and updated the weights
 * @param skipped whether the update was skipped because the loss or gradients were not finite
 * @param tokens predicted positions in the batch
 * @param millis wall time of the call
 * @param klToBase mean KL(p_base || p_adapted) on the batch's base rows (and prompts, when
 *     configured) before the update; NaN when the KL term is off or no position counts
 */
public record StepResult(long step, long microStep, double lossBefore, double lossAfter, double lr, double gradNorm,
        boolean updated, boolean skipped, long tokens, double millis, double klToBase) {}
