package dev.morastream.models.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Per-row adapter selection: row {@code i} of a batch goes through {@code ops.get(i)}, yet the
 * frozen base GEMM {@code x W^T + b} is done once for all rows. {@link BatchableOp}s of one kind
 * on a module (adapter versions of the same method and shape) compute the updates of all their
 * rows in one {@link BatchableOp#batchedDelta} (their matrices side by side in one GEMM, masked
 * per row); any other op's {@link LinearOp#delta} runs on its own rows only (gathered, then put
 * back in row order). Rows of the base model ({@link LinearOp#PLAIN}) add nothing. Ops are told
 * apart by identity: give the rows of one adapter version the same op instance.
 *
 * <p>Built for one step: its row indices live in that step's manager. Inputs are {@code (N, d_in)}.
 */
public final class RowGroupedOp implements LinearOp {
    private final int rows;
    private final List<LinearOp> groups; // distinct ops, in order of first row
    private final List<NDArray> index; // per group: its rows, int64 (n_g)
    private final int[] sizes; // per group: n_g
    private final NDArray inverse; // int64 (N): row i's place in group order
    private final int[] rowGroup; // (N): row i's group
    private final NDManager owner;
    private final Map<String, Prepared> prepared = new java.util.HashMap<>(); // per module

    /** What one module needs: the batched updates of each kind, and the groups computed alone. */
    private record Prepared(List<BatchableOp.RowsDelta> kinds, List<Integer> alone) {}

    private RowGroupedOp(NDManager owner, int rows, List<LinearOp> groups, List<NDArray> index, int[] sizes, NDArray inverse,
            int[] rowGroup) {
        this.owner = owner;
        this.rows = rows;
        this.groups = groups;
        this.index = index;
        this.sizes = sizes;
        this.inverse = inverse;
        this.rowGroup = rowGroup;
    }

    /**
     * @param owner receives the row indices and, per module on first use, the batched ops'
     *     prepared matrices and masks: a step's manager, or one that lives as long as the rows
     *     (and the adapters' values) stay the same and is closed after
     * @param perRow the op of each row, in row order
     */
    public static LinearOp of(NDManager owner, List<LinearOp> perRow) {
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
        int[] rowGroup = new int[perRow.size()];
        int at = 0;
        for (int g = 0; g < order.size(); g++) {
            List<Integer> rs = byOp.get(order.get(g));
            long[] ix = new long[rs.size()];
            for (int k = 0; k < ix.length; k++) {
                ix[k] = rs.get(k);
                inv[rs.get(k)] = at++;
                rowGroup[rs.get(k)] = g;
            }
            sizes[g] = ix.length;
            index.add(owner.create(ix)); // (n_g)
        }
        return new RowGroupedOp(owner, perRow.size(), order, index, sizes, owner.create(inv), rowGroup);
    }

    /** @param x {@code (N, d_in)}, or {@code (B, T, d_in)} with {@code N = B*T} rows in that order */
    @Override
    public NDArray apply(String module, NDArray x, NDArray weight, NDArray bias) {
        NDArray y = PLAIN.apply(module, x, weight, bias); // (..., d_out)
        NDArray d = delta(module, x, weight); // (..., d_out) or null
        return d == null ? y : y.add(d);
    }

    @Override
    public boolean sharesBase(String module) {
        return true;
    }

    @Override
    public NDArray delta(String module, NDArray x, NDArray weight) {
        Shape s = x.getShape();
        NDArray x2 = s.dimension() == 2 ? x : x.reshape(-1, s.get(s.dimension() - 1)); // (N, d_in)
        if (x2.getShape().get(0) != rows) {
            throw new IllegalArgumentException("expected " + rows + " rows, got " + x.getShape());
        }
        Prepared p = prepared.computeIfAbsent(module, this::prepare);
        NDArray sum = null;
        for (BatchableOp.RowsDelta k : p.kinds()) {
            NDArray d = k.delta(x2); // (N, d_out)
            sum = sum == null ? d : sum.add(d);
        }
        if (!p.alone().isEmpty()) {
            NDArray d = gathered(module, x2, weight, p.alone()); // (N, d_out)
            sum = sum == null ? d : sum.add(d);
        }
        if (sum == null || s.dimension() == 2) {
            return sum;
        }
        long[] out = s.getShape().clone();
        out[out.length - 1] = weight.getShape().get(0);
        return sum.reshape(new Shape(out)); // (..., d_out)
    }

    /** Batchable groups by kind; every other non-base group on its own rows. */
    private Prepared prepare(String module) {
        Map<Object, List<Integer>> kinds = new LinkedHashMap<>();
        List<Integer> alone = new ArrayList<>();
        for (int g = 0; g < groups.size(); g++) {
            LinearOp op = groups.get(g);
            if (op == PLAIN) {
                continue;
            }
            if (op instanceof BatchableOp b) {
                Object kind = b.deltaKind(module);
                if (kind != null) {
                    kinds.computeIfAbsent(kind, k -> new ArrayList<>()).add(g);
                }
            } else {
                alone.add(g);
            }
        }
        List<BatchableOp.RowsDelta> ds = new ArrayList<>();
        for (List<Integer> gs : kinds.values()) {
            List<BatchableOp> ops = new ArrayList<>(gs.size());
            int[] slot = new int[groups.size()];
            java.util.Arrays.fill(slot, -1);
            for (int k = 0; k < gs.size(); k++) {
                ops.add((BatchableOp) groups.get(gs.get(k)));
                slot[gs.get(k)] = k;
            }
            int[] rowOp = new int[rows];
            for (int i = 0; i < rows; i++) {
                rowOp[i] = slot[rowGroup[i]];
            }
            ds.add(ops.get(0).prepare(module, ops, rowOp, owner));
        }
        return new Prepared(ds, alone);
    }

    /** The updates of the groups {@code which} on their own rows, zeros elsewhere: {@code (N, d_out)}. */
    private NDArray gathered(String module, NDArray x, NDArray weight, List<Integer> which) {
        long dOut = weight.getShape().get(0);
        NDList parts = new NDList();
        for (int g = 0; g < groups.size(); g++) {
            NDArray d = which.contains(g) ? groups.get(g).delta(module, x.get(index.get(g)), weight) : null; // (n_g, d_out)
            if (d == null) {
                d = x.getManager().zeros(new Shape(sizes[g], dOut), x.getDataType(), x.getDevice()); // (n_g, d_out)
            }
            parts.add(d);
        }
        return NDArrays.concat(parts, 0).get(inverse); // (N, d_out), row order
    }
}
