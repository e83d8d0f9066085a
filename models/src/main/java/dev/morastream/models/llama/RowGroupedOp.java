package dev.morastream.models.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Per-row adapter selection: row {@code i} of a batch goes through {@code ops.get(i)}, yet the
 * frozen base GEMM {@code x W^T + b} is done once for all rows and each distinct op's
 * {@link LinearOp#delta} only on its own rows (gathered, then put back in row order). Rows of
 * the base model ({@link LinearOp#PLAIN}) add nothing. Ops are told apart by identity: give the
 * rows of one adapter version the same op instance.
 *
 * <p>Built for one step: its row indices live in that step's manager. Inputs are {@code (N, d_in)}.
 */
public final class RowGroupedOp implements LinearOp {
    private final int rows;
    private final List<LinearOp> groups; // distinct ops, in order of first row
    private final List<NDArray> index; // per group: its rows, int64 (n_g)
    private final int[] sizes; // per group: n_g
    private final NDArray inverse; // int64 (N): row i's place in group order, null with one group

    private RowGroupedOp(int rows, List<LinearOp> groups, List<NDArray> index, int[] sizes, NDArray inverse) {
        this.rows = rows;
        this.groups = groups;
        this.index = index;
        this.sizes = sizes;
        this.inverse = inverse;
    }

    /**
     * @param step manager of the step (receives the row indices)
     * @param perRow the op of each row, in row order
     */
    public static LinearOp of(NDManager step, List<LinearOp> perRow) {
        Map<LinearOp, List<Integer>> byOp = new IdentityHashMap<>();
        List<LinearOp> order = new ArrayList<>();
        for (int i = 0; i < perRow.size(); i++) {
            LinearOp op = perRow.get(i);
            byOp.computeIfAbsent(op, k -> {
                order.add(k);
                return new ArrayList<>();
            }).add(i);
        }
        if (order.size() == 1) {
            return order.get(0); // one version for every row: its own op is exactly this
        }
        List<NDArray> index = new ArrayList<>();
        int[] sizes = new int[order.size()];
        long[] inv = new long[perRow.size()];
        int at = 0;
        for (int g = 0; g < order.size(); g++) {
            List<Integer> rs = byOp.get(order.get(g));
            long[] ix = new long[rs.size()];
            for (int k = 0; k < ix.length; k++) {
                ix[k] = rs.get(k);
                inv[rs.get(k)] = at++;
            }
            sizes[g] = ix.length;
            index.add(step.create(ix)); // (n_g)
        }
        return new RowGroupedOp(perRow.size(), order, index, sizes, step.create(inv));
    }

    @Override
    public NDArray apply(String module, NDArray x, NDArray weight, NDArray bias) {
        NDArray y = PLAIN.apply(module, x, weight, bias); // (N, d_out)
        NDArray d = delta(module, x, weight); // (N, d_out) or null
        return d == null ? y : y.add(d);
    }

    @Override
    public NDArray delta(String module, NDArray x, NDArray weight) {
        if (x.getShape().get(0) != rows) {
            throw new IllegalArgumentException("expected " + rows + " rows, got " + x.getShape());
        }
        long dOut = weight.getShape().get(0);
        NDList parts = new NDList();
        boolean any = false;
        for (int g = 0; g < groups.size(); g++) {
            LinearOp op = groups.get(g);
            NDArray d = op == PLAIN ? null : op.delta(module, x.get(index.get(g)), weight); // (n_g, d_out)
            if (d == null) {
                d = x.getManager().zeros(new Shape(sizes[g], dOut), x.getDataType(), x.getDevice()); // (n_g, d_out)
            } else {
                any = true;
            }
            parts.add(d);
        }
        if (!any) {
            return null;
        }
        return NDArrays.concat(parts, 0).get(inverse); // (N, d_out), row order
    }
}
