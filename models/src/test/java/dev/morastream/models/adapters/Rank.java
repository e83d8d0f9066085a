package dev.morastream.models.adapters;

/** Numeric rank by Gaussian elimination with full pivoting, in double precision (tests only). */
final class Rank {
    private Rank() {}

    /** Number of pivots larger than {@code relTol} times the largest absolute entry. */
    static int numericRank(float[] m, int rows, int cols, double relTol) {
        double[][] a = new double[rows][cols];
        double max = 0;
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) {
                a[i][j] = m[i * cols + j];
                max = Math.max(max, Math.abs(a[i][j]));
            }
        }
        double tol = relTol * max;
        int rank = 0;
        boolean[] rowUsed = new boolean[rows];
        boolean[] colUsed = new boolean[cols];
        for (int k = 0; k < Math.min(rows, cols); k++) {
            int pr = -1;
            int pc = -1;
            double best = tol;
            for (int i = 0; i < rows; i++) {
                if (rowUsed[i]) {
                    continue;
                }
                for (int j = 0; j < cols; j++) {
                    if (!colUsed[j] && Math.abs(a[i][j]) > best) {
                        best = Math.abs(a[i][j]);
                        pr = i;
                        pc = j;
                    }
                }
            }
            if (pr < 0) {
                break;
            }
            rowUsed[pr] = true;
            colUsed[pc] = true;
            rank++;
            for (int i = 0; i < rows; i++) {
                if (!rowUsed[i]) {
                    double f = a[i][pc] / a[pr][pc];
                    for (int j = 0; j < cols; j++) {
                        a[i][j] -= f * a[pr][j];
                    }
                }
            }
        }
        return rank;
    }
}
