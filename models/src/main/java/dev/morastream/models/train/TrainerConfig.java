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
        int remoraWarmup) {

    public TrainerConfig {
        if (gradAccum < 1) {
            throw new IllegalArgumentException("grad-accum must be >= 1");
        }
        if (lr <= 0 || !Double.isFinite(lr)) {
            throw new IllegalArgumentException("learning rate must be positive, got " + lr);
        }
    }

    /** Constant learning rate, no warmup, clip 1, no decay: a sensible start for streaming. */
    public static TrainerConfig constant(double lr) {
        return new TrainerConfig(lr, LrSchedule.Kind.CONSTANT, 0, 0, 1, 0, 1.0, 1, false, true, 0, 50);
    }

    public TrainerConfig withSchedule(LrSchedule.Kind kind, int warmup, int total) {
        return new TrainerConfig(lr, kind, warmup, total, minLrRatio, weightDecay, clipNorm, gradAccum, completionOnly,
                measureAfter, remoraEvery, remoraWarmup);
    }

    public TrainerConfig withGradAccum(int n) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, n,
                completionOnly, measureAfter, remoraEvery, remoraWarmup);
    }

    public TrainerConfig withRemora(int every, int warmup) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, gradAccum,
                completionOnly, measureAfter, every, warmup);
    }

    public TrainerConfig withCompletionOnly(boolean on) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, gradAccum,
                on, measureAfter, remoraEvery, remoraWarmup);
    }

    public TrainerConfig withMeasureAfter(boolean on) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, weightDecay, clipNorm, gradAccum,
                completionOnly, on, remoraEvery, remoraWarmup);
    }

    public TrainerConfig withWeightDecay(double wd) {
        return new TrainerConfig(lr, schedule, warmupSteps, totalSteps, minLrRatio, wd, clipNorm, gradAccum,
                completionOnly, measureAfter, remoraEvery, remoraWarmup);
    }
}
