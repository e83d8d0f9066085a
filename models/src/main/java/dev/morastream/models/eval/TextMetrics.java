package dev.morastream.models.eval;

/** Text-level quality metrics for memorisation checks. */
public final class TextMetrics {
    private TextMetrics() {}

    /**
     * Character-level accuracy as in the MoRA paper: the fraction of positions {@code i <
     * truth.length()} where {@code generated} has the same char as {@code truth}. An empty truth
     * scores 1.0 when {@code generated} is empty too, 0.0 otherwise.
     */
    public static double charAccuracy(String generated, String truth) {
        if (truth.isEmpty()) {
            return generated.isEmpty() ? 1.0 : 0.0;
        }
        int n = Math.min(generated.length(), truth.length());
        int same = 0;
        for (int i = 0; i < n; i++) {
            if (generated.charAt(i) == truth.charAt(i)) {
                same++;
            }
        }
        return (double) same / truth.length();
    }

    /** Whether the two texts are equal once leading and trailing whitespace is stripped. */
    public static boolean exactMatch(String generated, String truth) {
        return generated.strip().equals(truth.strip());
    }
}
