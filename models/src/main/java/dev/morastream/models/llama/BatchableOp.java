package dev.morastream.models.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.List;

/**
 * A {@link LinearOp} whose update can be computed together with other ops' updates on the rows of
 * one batch ({@link RowGroupedOp}): ops whose {@link #deltaKind} on a module is equal (same
 * method and shape) compute all their rows at once, so that a batch of {@code K} versions costs
 * about what one costs.
 */
public interface BatchableOp extends LinearOp {
    /**
     * What kind of update this op adds to {@code module} (ops of equal kinds batch together), or
     * {@code null} when it adds none there.
     */
    Object deltaKind(String module);

    /**
     * Prepares the updates of {@code ops} (all of this op's kind on {@code module}) for the rows
     * of a batch whose composition stays as given while the result is used (matrices side by
     * side, row masks: built once, kept in {@code owner}).
     *
     * @param rowOp per row: the index of its op in {@code ops}, or {@code -1} for none (zeros)
     * @param owner manager of what is prepared; its owner closes it when the rows change
     */
    RowsDelta prepare(String module, List<BatchableOp> ops, int[] rowOp, NDManager owner);

    /** The updates of a fixed set of rows, each through its own op. */
    @FunctionalInterface
    interface RowsDelta {
        /**
         * @param x {@code (N, d_in)}, owned by the step's manager
         * @return {@code (N, d_out)} in the manager of {@code x}
         */
        NDArray delta(NDArray x);
    }
}
