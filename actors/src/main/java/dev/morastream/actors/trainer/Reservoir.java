package dev.morastream.actors.trainer;

import dev.morastream.actors.evaluator.Sample;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.TrainBatch;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * Uniform reservoir samples (Vitter's algorithm R) of what a trainer has trained on: whole
 * prompt/completion records found in the packed rows, and the rows themselves. Not thread-safe:
 * owned by one trainer actor.
 */
final class Reservoir {
    private final TextTokenizer tok;
    private final int factCap;
    private final int textCap;
    private final Random random;
    private final List<Sample.Fact> facts = new ArrayList<>();
    private final List<int[]> texts = new ArrayList<>();
    private long factsSeen;
    private long textsSeen;

    Reservoir(TextTokenizer tok, int factCap, int textCap, long seed) {
        this.tok = tok;
        this.factCap = factCap;
        this.textCap = textCap;
        this.random = new Random(seed);
    }

    /** Offers the batch's rows, except base rows (replayed general text, the base's own answers): not the domain's. */
    void add(TrainBatch b) {
        for (int i = 0; i < b.tokens().length; i++) {
            if (b.baseRow(i)) {
                continue;
            }
            int[] row = b.tokens()[i];
            textsSeen++;
            offer(texts, textCap, textsSeen, row.clone());
            if (b.completionMask() != null) {
                for (Sample.Fact f : facts(row, b.completionMask()[i], tok)) {
                    factsSeen++;
                    offer(facts, factCap, factsSeen, f);
                }
            }
        }
    }

    private <T> void offer(List<T> list, int cap, long seen, T item) {
        if (cap <= 0) {
            return;
        }
        if (list.size() < cap) {
            list.add(item);
        } else {
            long j = (long) (random.nextDouble() * seen);
            if (j < cap) {
                list.set((int) j, item);
            }
        }
    }

    Sample snapshot() {
        return new Sample(facts, texts);
    }

    /**
     * The whole prompt/completion records of one packed row: a record starts at a BOS, its prompt
     * targets have completion mask 0, its completion targets 1, and it ends at an EOS inside the row.
     * Records cut by the row's edges are left out.
     *
     * @param row {@code (T + 1)} ids; target {@code j} is {@code row[j + 1]}
     * @param mask {@code (T)} completion mask of the targets
     */
    static List<Sample.Fact> facts(int[] row, float[] mask, TextTokenizer tok) {
        List<Sample.Fact> out = new ArrayList<>();
        int bos = tok.bos();
        if (bos < 0 || tok.eos().isEmpty()) {
            return out;
        }
        for (int s = 0; s < row.length; s++) {
            if (row[s] != bos) {
                continue;
            }
            // prompt: tokens after BOS whose targets are masked 0; completion: the following 1s up to EOS
            int p = s + 1;
            while (p < row.length && row[p] != bos && mask[p - 1] == 0f) {
                p++;
            }
            int e = p;
            while (e < row.length && row[e] != bos && !tok.eos().contains(row[e]) && mask[e - 1] == 1f) {
                e++;
            }
            boolean complete = e < row.length && tok.eos().contains(row[e]) && mask[e - 1] == 1f;
            if (complete && p > s + 1 && e > p) {
                out.add(new Sample.Fact(tok.decode(Arrays.copyOfRange(row, s + 1, p)), tok.decode(Arrays.copyOfRange(row, p, e))));
            }
            s = e - 1;
        }
        return out;
    }
}
