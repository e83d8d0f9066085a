package dev.morastream.models.generate;

import java.util.List;

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
 * @param logprobs one entry per generated id (same order as {@code tokenIds})
 * @param promptLogprobs one entry per prompt id when the prompt was scored ({@link Generator.Scoring#echo}),
 *     the first unscored; empty otherwise
 */
public record GenerationResult(
        String text,
        int[] tokenIds,
        int promptTokens,
        String finishReason,
        long timeToFirstTokenNanos,
        long totalNanos,
        List<TokenLogprob> logprobs,
        List<TokenLogprob> promptLogprobs) {

    public static final String STOP = "stop";
    public static final String LENGTH = "length";

    public GenerationResult {
        tokenIds = tokenIds.clone();
        logprobs = List.copyOf(logprobs);
        promptLogprobs = List.copyOf(promptLogprobs);
        if (!logprobs.isEmpty() && logprobs.size() != tokenIds.length) {
            throw new IllegalArgumentException(logprobs.size() + " logprobs for " + tokenIds.length + " tokens");
        }
        if (!STOP.equals(finishReason) && !LENGTH.equals(finishReason)) {
            throw new IllegalArgumentException("finishReason must be stop or length, got " + finishReason);
        }
    }

    /** Without logprobs. */
    public GenerationResult(String text, int[] tokenIds, int promptTokens, String finishReason, long timeToFirstTokenNanos,
            long totalNanos) {
        this(text, tokenIds, promptTokens, finishReason, timeToFirstTokenNanos, totalNanos, List.of(), List.of());
    }

    /** Mean log-probability of the generated tokens (0 when none): how {@code best_of} ranks candidates. */
    public double meanLogprob() {
        return logprobs.isEmpty() ? 0 : logprobs.stream().mapToDouble(TokenLogprob::logprob).average().orElse(0);
    }

    /** Number of generated tokens. */
    public int completionTokens() {
        return tokenIds.length;
    }
}
