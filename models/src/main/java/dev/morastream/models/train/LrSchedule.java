package dev.morastream.models.train;

/**
 * Learning rate by step: linear warmup to {@code peak}, then cosine or linear decay to {@code peak
 * * minRatio} at {@code totalSteps}, or constant.
 *
 * @param kind decay after warmup
 * @param peak learning rate reached at the end of warmup
 * @param warmupSteps steps of linear warmup from 0
 * @param totalSteps step at which decay ends (later steps stay at the floor)
 * @param minRatio floor as a fraction of peak
 */
public record LrSchedule(Kind kind, double peak, int warmupSteps, int totalSteps, double minRatio) {
    /** Shape of the decay. */
    public enum Kind {
        COSINE,
        LINEAR,
        CONSTANT;

        public static Kind parse(String s) {
            return valueOf(s.trim().toUpperCase(java.util.Locale.ROOT));
        }
    }

    public LrSchedule {
        if (peak < 0 || warmupSteps < 0 || minRatio < 0 || minRatio > 1) {
            throw new IllegalArgumentException("bad schedule: peak " + peak + ", warmup " + warmupSteps + ", min ratio " + minRatio);
        }
    }

    public static LrSchedule constant(double lr) {
        return new LrSchedule(Kind.CONSTANT, lr, 0, 0, 1);
    }

    /** Learning rate used for the update of 0-based step {@code step}. */
    public double lr(long step) {
        if (step < warmupSteps) {
            return peak * (step + 1) / (double) warmupSteps;
        }
        if (kind == Kind.CONSTANT || totalSteps <= warmupSteps) {
            return peak;
        }
        double progress = Math.min(1.0, (step - warmupSteps) / (double) (totalSteps - warmupSteps));
        double floor = peak * minRatio;
        return switch (kind) {
            case COSINE -> floor + (peak - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
            case LINEAR -> floor + (peak - floor) * (1 - progress);
            case CONSTANT -> peak;
        };
    }
}
