package dev.morastream.models.generate;

/**
 * What {@link Generator#generate} produced.
 *
 * @param text the generated text only (no prompt), cut before any stop string
 * @param tokenIds the generated ids, in order; includes the EOS id or the token that completed a
 *     stop string when generation ended that way
 * @param promptTokens number of prompt ids fed to the model, BOS included
 * @param finishReason {@link #STOP} (stop string or EOS) or {@link #LENGTH} (max new tokens or
 *     context full)
 * @param timeToFirstTokenNanos from the call to the first sampled token; equal to {@code
 *     totalNanos} when no token was generated
 * @param totalNanos whole call
 */
public record GenerationResult(
        String text,
        int[] tokenIds,
        int promptTokens,
        String finishReason,
        long timeToFirstTokenNanos,
        long totalNanos) {

    public static final String STOP = "stop";
    public static final String LENGTH = "length";

    public GenerationResult {
        tokenIds = tokenIds.clone();
        if (!STOP.equals(finishReason) && !LENGTH.equals(finishReason)) {
            throw new IllegalArgumentException("finishReason must be stop or length, got " + finishReason);
        }
    }

    /** Number of generated tokens. */
    public int completionTokens() {
        return tokenIds.length;
    }
}
