package dev.morastream.models.train;

/**
 * Packed training sequences.
 *
 * @param tokens {@code (B, T + 1)} ids; position t predicts t + 1
 * @param targetMask {@code (B, T)}: 1 where the target counts (0 on padding), or {@code null} for all
 * @param completionMask {@code (B, T)}: 1 where the target is a completion token, or {@code null}
 */
public record TrainBatch(int[][] tokens, float[][] targetMask, float[][] completionMask) {
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
    }

    public static TrainBatch of(int[][] tokens) {
        return new TrainBatch(tokens, null, null);
    }

    /** Number of predicted positions. */
    public long predictions() {
        return (long) tokens.length * (tokens[0].length - 1);
    }
}
