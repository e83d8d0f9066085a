package dev.morastream.streams.replay;

import dev.morastream.models.corpus.SyntheticCorpus;
import dev.morastream.models.corpus.SyntheticWorld;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.PseudoRehearsal;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.streams.pack.PackedBatch;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Random;

/**
 * Replay against forgetting: appends to each new packed batch rows drawn from a reservoir of the
 * domain's earlier rows, from the base model's general corpus and from pseudo-rehearsal rows (prompts
 * answered by the frozen base itself), so that about {@code fraction} of the rows the trainer sees
 * are replayed. General and rehearsal rows are flagged as base rows ({@link TrainBatch#baseRows}):
 * the trainer's KL-to-base term counts them.
 *
 * <p>Exactly-once accounting is untouched: the batch's new rows come first and are unchanged (no
 * new token is dropped), and its offsets, resume points, completed ids and sequence number are
 * those of the packed batch; replayed rows are the <em>last</em> {@code rows - B} rows and carry no
 * offset. A replayed row is never a row of the same batch (the batch's rows enter the domain's
 * reservoir after it is mixed), and replayed rows never re-enter a reservoir.
 *
 * <p>The number of replayed rows is {@code f B / (1 - f)} rounded up or down at random so that its
 * expectation is exact (a batch of 8 rows at f = 0.1 gets one replayed row about 89% of the time).
 * Memory: at most {@code capacity} rows per domain plus the general rows. Deterministic for a seed
 * and a sequence of batches. Not thread-safe: one stream stage owns it.
 */
public final class ReplayMixer {
    /**
     * @param fraction share of the mixed batch's rows that are replayed, in [0, 1); 0 turns replay off
     * @param capacity rows kept per domain (Algorithm R)
     * @param generalShare share of the replayed rows taken from the general corpus
     * @param generalDocs documents of the general corpus packed into general rows
     * @param seed seeds the reservoirs, the general corpus and the choices
     * @param rehearsalShare share of the replayed rows taken from the pseudo-rehearsal rows, when
     *     there are any (the rest of the replayed rows, {@code 1 - generalShare - rehearsalShare},
     *     comes from the domain's earlier rows)
     */
    public record Config(double fraction, int capacity, double generalShare, int generalDocs, long seed, double rehearsalShare) {
        public Config {
            if (!(fraction >= 0 && fraction < 1)) {
                throw new IllegalArgumentException("replay fraction must be in [0, 1): " + fraction);
            }
            if (capacity < 1 || generalDocs < 1) {
                throw new IllegalArgumentException("capacity and general docs must be positive");
            }
            if (!(generalShare >= 0 && generalShare <= 1)) {
                throw new IllegalArgumentException("general share must be in [0, 1]: " + generalShare);
            }
            if (!(rehearsalShare >= 0 && rehearsalShare + generalShare <= 1 + 1e-9)) {
                throw new IllegalArgumentException("rehearsal share must be >= 0 and general share + rehearsal share at most 1: "
                        + generalShare + " + " + rehearsalShare);
            }
        }

        /** Without pseudo-rehearsal. */
        public Config(double fraction, int capacity, double generalShare, int generalDocs, long seed) {
            this(fraction, capacity, generalShare, generalDocs, seed, 0);
        }

        /** 10% replayed rows, half of them general, 1024 rows per domain, 2000 general documents. */
        public static Config defaults() {
            return new Config(0.1, 1024, 0.5, 2000, 0);
        }
    }

    /**
     * One row and its mask rows ({@code null}: every target counts).
     *
     * @param base whether the row stands for the base's knowledge (general corpus, pseudo-rehearsal)
     */
    record Row(int[] tokens, float[] targetMask, float[] completionMask, boolean base) {}

    private final Config config;
    private final List<Row> general;
    private final List<Row> rehearsal;
    private final Map<String, Reservoir<Row>> domains = new HashMap<>();
    private final Random random;
    private long replayedRows;
    private long newRows;

    /** General rows from {@link SyntheticCorpus} of {@link SyntheticWorld#base()}, packed like domain text. */
    public ReplayMixer(Config config, TextTokenizer tokenizer, int seqLen) {
        this(config, generalRows(tokenizer, seqLen, config.generalDocs(), config.seed()), new PseudoRehearsal.Rows(List.of(), List.of()));
    }

    /**
     * With pseudo-rehearsal rows (of {@code seqLen + 1} tokens, their completion mask marking the
     * base's answers), drawn for {@link Config#rehearsalShare} of the replayed rows.
     */
    public ReplayMixer(Config config, TextTokenizer tokenizer, int seqLen, PseudoRehearsal.Rows rehearsalRows) {
        this(config, generalRows(tokenizer, seqLen, config.generalDocs(), config.seed()), rehearsalRows);
    }

    ReplayMixer(Config config, List<int[]> generalRows) {
        this(config, generalRows, new PseudoRehearsal.Rows(List.of(), List.of()));
    }

    ReplayMixer(Config config, List<int[]> generalRows, PseudoRehearsal.Rows rehearsalRows) {
        this.config = Objects.requireNonNull(config);
        if (generalRows.isEmpty()) {
            throw new IllegalArgumentException("no general rows");
        }
        this.general = generalRows.stream().map(t -> new Row(t, null, null, true)).toList();
        List<Row> reh = new ArrayList<>();
        for (int i = 0; i < rehearsalRows.tokens().size(); i++) {
            reh.add(new Row(rehearsalRows.tokens().get(i), null, rehearsalRows.completion().get(i), true));
        }
        this.rehearsal = List.copyOf(reh);
        this.random = new Random(config.seed());
    }

    /**
     * The general corpus (the base model's pretraining distribution: documents of the synthetic
     * world, not its held-out set) as rows of {@code seqLen + 1} tokens: each document framed with
     * BOS (when the tokenizer has one) and EOS, concatenated, cut; the last partial row is dropped.
     */
    public static List<int[]> generalRows(TextTokenizer tokenizer, int seqLen, int docs, long seed) {
        int bos = tokenizer.bos();
        int eos = tokenizer.eos().iterator().next();
        int rowLen = seqLen + 1;
        List<int[]> rows = new ArrayList<>();
        int[] row = new int[rowLen];
        int at = 0;
        for (String doc : new SyntheticCorpus(SyntheticWorld.base()).documents(seed, docs)) {
            int[] ids = tokenizer.encode(doc);
            int[] framed = new int[ids.length + (bos >= 0 ? 2 : 1)];
            int k = 0;
            if (bos >= 0) {
                framed[k++] = bos;
            }
            System.arraycopy(ids, 0, framed, k, ids.length);
            framed[framed.length - 1] = eos;
            for (int t : framed) {
                row[at++] = t;
                if (at == rowLen) {
                    rows.add(row);
                    row = new int[rowLen];
                    at = 0;
                }
            }
        }
        return rows;
    }

    public Config config() {
        return config;
    }

    /** Rows replayed so far. */
    public long replayedRows() {
        return replayedRows;
    }

    /** New (packed) rows seen so far. */
    public long newRows() {
        return newRows;
    }

    /** Rows kept for {@code domain}. */
    public int reservoirSize(String domain) {
        Reservoir<Row> r = domains.get(domain);
        return r == null ? 0 : r.size();
    }

    /** The batch with replayed rows appended (the same batch when none are drawn); then remembers its rows. */
    public PackedBatch mix(PackedBatch b) {
        TrainBatch tb = b.batch();
        int rows = tb.tokens().length;
        int rowLen = tb.tokens()[0].length;
        Reservoir<Row> own = domains.computeIfAbsent(b.domain(),
                d -> new Reservoir<>(config.capacity(), config.seed() ^ d.hashCode()));
        int k = replayCount(rows);
        List<Row> replay = new ArrayList<>(k);
        for (int i = 0; i < k; i++) {
            double u = random.nextDouble();
            boolean fromRehearsal = !rehearsal.isEmpty() && u >= 1 - config.rehearsalShare();
            boolean fromGeneral = !fromRehearsal && (own.isEmpty() || u < config.generalShare());
            Row r = fromRehearsal ? rehearsal.get(random.nextInt(rehearsal.size()))
                    : fromGeneral ? general.get(random.nextInt(general.size())) : own.sample(random);
            if (r.tokens().length == rowLen) {
                replay.add(r);
            }
        }
        // remember this batch's rows (only new ones) for later batches
        for (int i = 0; i < rows; i++) {
            // copies: the trainer owns the batch's arrays
            own.offer(new Row(tb.tokens()[i].clone(),
                    tb.targetMask() == null ? null : tb.targetMask()[i].clone(),
                    tb.completionMask() == null ? null : tb.completionMask()[i].clone(), tb.baseRow(i)));
        }
        newRows += rows;
        replayedRows += replay.size();
        if (replay.isEmpty()) {
            return b;
        }
        int total = rows + replay.size();
        int[][] tokens = Arrays.copyOf(tb.tokens(), total); // (B + k, T + 1)
        boolean anyTarget = tb.targetMask() != null || replay.stream().anyMatch(r -> r.targetMask() != null);
        boolean anyCompletion = tb.completionMask() != null || replay.stream().anyMatch(r -> r.completionMask() != null);
        float[][] target = anyTarget ? new float[total][] : null; // (B + k, T)
        float[][] completion = anyCompletion ? new float[total][] : null; // (B + k, T)
        boolean[] base = new boolean[total]; // (B + k)
        for (int i = 0; i < total; i++) {
            Row r = i < rows ? null : replay.get(i - rows);
            base[i] = r == null ? tb.baseRow(i) : r.base();
            if (r != null) {
                tokens[i] = r.tokens().clone();
            }
            float[] t = r == null ? (tb.targetMask() == null ? null : tb.targetMask()[i]) : r.targetMask();
            float[] c = r == null ? (tb.completionMask() == null ? null : tb.completionMask()[i]) : r.completionMask();
            if (target != null) {
                target[i] = t != null ? t : ones(rowLen - 1);
            }
            if (completion != null) {
                // a row without a completion mask is text: every target counts (the packer's convention)
                completion[i] = c != null ? c : ones(rowLen - 1);
            }
        }
        return new PackedBatch(b.domain(), new TrainBatch(tokens, target, completion, base), b.ranges(), b.resume(),
                b.completedIds(), b.sequence());
    }

    /** {@code f B / (1 - f)} with random rounding (exact in expectation). */
    private int replayCount(int rows) {
        double f = config.fraction();
        if (f == 0) {
            return 0;
        }
        double want = f * rows / (1 - f);
        int whole = (int) Math.floor(want);
        return whole + (random.nextDouble() < want - whole ? 1 : 0);
    }

    private static float[] ones(int n) {
        float[] a = new float[n];
        Arrays.fill(a, 1f);
        return a;
    }
}
