package dev.morastream.models.train;

/**
 * Settings of the incremental trainer.
 *
 * @param lr peak learning rate
 * @param schedule decay after warmup
 * @param warmupSteps linear warmup (optimizer steps)
 * @param totalSteps end of the decay (ignored by CONSTANT)
 * @param minLrRatio floor of the decay as a fraction of {@code lr}
 * @param weightDecay AdamW decoupled weight decay of the trainable matrices
 * @param clipNorm global gradient-norm clip, 0 = off
 * @param gradAccum micro-batches per optimizer step
 * @param completionOnly loss only on completion tokens when the batch marks them
 * @param measureAfter also measure the batch loss after the update (one extra forward)
 * @param remoraEvery ReMoRA/ReLoRA: merge and restart every this many optimizer steps, 0 = off
 * @param remoraWarmup warmup after each ReMoRA restart (the reference uses 50)
 * @param klWeight weight of the KL-to-base term: {@code klWeight x mean KL(p_base || p_adapted)} over
 *     the target positions of the batch's base rows ({@link TrainBatch#baseRows}), added to the
 *     cross-entropy; 0 = off
 * @param klOnPrompts also count the prompt positions of the new rows (where the completion mask is
 *     0) in that KL
 */
public record TrainerConfig(
        double lr,
        LrSchedule.Kind schedule,
        int warmupSteps,
        int totalSteps,
        double minLrRatio,
        double weightDecay,
        double clipNorm,
        int gradAccum,
        boolean completionOnly,
        boolean measureAfter,
        int remoraEvery,
        int remoraWarmup,
        double klWeight,
        boolean klOnPrompts) {

    public TrainerConfig {
        if (gradAccum < 1) {
            throw new IllegalArgumentException("grad-accum must be >= 1");
        }
        if (lr <= 0 || !Double.isFinite(lr)) {
            throw new IllegalArgumentException("learning rate must be positive, got " + lr);
        }
        if (!(klWeight >= 0) || !Double.isFinite(klWeight)) {
            throw new IllegalArgumentException("kl-weight must be a finite number >= 0, got " + klWeight);
        }
    }

    /** Without the KL-to-base term. */
    public TrainerConfig(double lr, LrSchedule.Kind schedule, int warmupSteps, int totalSteps, double minLrRatio, double weightDecay,
            double clipNorm, int gradAccum, boolean completionOnly, boolean measureAfter, int remoraEvery, int remoraWarmup) {
        this(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, gradAccum, completionOnly, measureAfter,
                remoraEvery, remoraWarmup, 0, false);
    }

    public TrainerConfig withKl(double weight, boolean onPrompts) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, gradAccum,
                completionOnly, measureAfter, remoraEvery, remoraWarmup, weight, onPrompts);
    }

    /** Constant learning rate, no warmup, clip 1, no decay: a sensible start for streaming. */
    public static TrainerConfig constant(double lr) {
        return new TrainerConfig(lr, LrSchedule.Kind.CONSTANT, 0, 0, 1, 0, 1.0, 1, false, true, 0, 50);
    }

    public TrainerConfig withSchedule(LrSchedule.Kind kind, int warmup, int total) {
        return new TrainerConfig(lr, kind, warmup, total, minLrRatio, weightDecay, clipNorm, gradAccum, completionOnly,
                measureAfter, remoraEvery, remoraWarmup, klWeight, klOnPrompts);
    }

    public TrainerConfig withGradAccum(int n) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, n,
                completionOnly, measureAfter, remoraEvery, remoraWarmup, klWeight, klOnPrompts);
    }

    public TrainerConfig withRemora(int every, int warmup) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, gradAccum,
                completionOnly, measureAfter, every, warmup, klWeight, klOnPrompts);
    }

    public TrainerConfig withCompletionOnly(boolean on) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, gradAccum,
                on, measureAfter, remoraEvery, remoraWarmup, klWeight, klOnPrompts);
    }

    public TrainerConfig withMeasureAfter(boolean on) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, gradAccum,
                completionOnly, on, remoraEvery, remoraWarmup, klWeight, klOnPrompts);
    }

    public TrainerConfig withWeightDecay(double wd) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, wd, clipNorm, gradAccum,
                completionOnly, measureAfter, remoraEvery, remoraWarmup, klWeight, klOnPrompts);
    }
}
