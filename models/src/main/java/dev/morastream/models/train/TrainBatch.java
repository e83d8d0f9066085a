package dev.morastream.models.train;

/**
 * Packed training sequences.
 *
 * @param tokens {@code (B, T + 1)} ids; position t predicts t + 1
 * @param targetMask {@code (B, T)}: 1 where the target counts (0 on padding), or {@code null} for all
 * @param completionMask {@code (B, T)}: 1 where the target is a completion token, or {@code null}
 * @param baseRows {@code (B)}: true for a row whose text stands for what the base model knows
 *     (general-corpus replay, pseudo-rehearsal answered by the base): the trainer's KL-to-base term
 *     counts its positions; {@code null} for none
 */
public record TrainBatch(int[][] tokens, float[][] targetMask, float[][] completionMask, boolean[] baseRows) {
    public TrainBatch {
        if (tokens.length == 0 || tokens[0].length < 2) {
            throw new IllegalArgumentException("a batch needs at least one sequence of two tokens");
        }
        int len = tokens[0].length;
        for (int[] row : tokens) {
            if (row.length != len) {
                throw new IllegalArgumentException("ragged batch: rows of " + len + " and " + row.length + " tokens");
            }
        }
        if (baseRows != null && baseRows.length != tokens.length) {
            throw new IllegalArgumentException("base-row flags for " + baseRows.length + " rows, batch has " + tokens.length);
        }
    }

    /** No base rows. */
    public TrainBatch(int[][] tokens, float[][] targetMask, float[][] completionMask) {
        this(tokens, targetMask, completionMask, null);
    }

    public static TrainBatch of(int[][] tokens) {
        return new TrainBatch(tokens, null, null, null);
    }

    /** Number of predicted positions. */
    public long predictions() {
        return (long) tokens.length * (tokens[0].length - 1);
    }

    /** Whether row {@code i} is a base row. */
    public boolean baseRow(int i) {
        return baseRows != null && baseRows[i];
    }
}
