package dev.morastream.models.llama;

import ai.djl.ndarray.NDArray;
import java.util.List;

/**
 * A {@link LinearOp} whose update can be computed together with other ops' updates on the rows of
 * one batch ({@link RowGroupedOp}): ops whose {@link #deltaKind} on a module is equal (same
 * method and shape) compute all their rows in one {@link #batchedDelta}, so that a batch of
 * {@code K} versions costs about what one costs.
 */
public interface BatchableOp extends LinearOp {
    /**
     * What kind of update this op adds to {@code module} (ops of equal kinds batch together), or
     * {@code null} when it adds none there.
     */
    Object deltaKind(String module);

    /**
     * The updates of {@code ops} (all of this op's kind on {@code module}) on the rows of one batch.
     *
     * @param x {@code (N, d_in)}, owned by the step's manager
     * @param weight the base weight {@code (d_out, d_in)}
     * @param rowOp per row: the index of its op in {@code ops}, or {@code -1} for none (zeros)
     * @return {@code (N, d_out)} in the manager of {@code x}
     */
    NDArray batchedDelta(String module, NDArray x, NDArray weight, List<BatchableOp> ops, int[] rowOp);
}
