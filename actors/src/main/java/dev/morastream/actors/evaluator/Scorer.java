package dev.morastream.actors.evaluator;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.morastream.actors.supervisor.Scores;
import dev.morastream.models.eval.Perplexity;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.eval.TextMetrics;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.Generator;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.Losses;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The evaluator's measurements of one adapter ({@link LinearOp}) on a frozen base: memorisation of a
 * {@link Sample} (greedy character accuracy on trained facts, loss on trained rows), accuracy per
 * downstream task set (greedy answers cut at the first newline), retention (loss on the base's
 * held-out text) and the mean forward KL(p_base || p_adapter) on a fixed prompt set: every task
 * item's prompt followed by the base's own greedy answer, over the positions that predict the
 * answer (the base's knowledge, as RL's Razor measures forgetting). The base's answers are generated
 * once. Not thread-safe: one owner (an evaluator actor, a benchmark).
 */
public final class Scorer {
    /** Rows of one KL forward. */
    private static final int KL_BATCH = 32;

    private final LlamaModel model;
    private final LlamaModel base; // the frozen base: model itself, or a copy when model's weights are trained
    private final TextTokenizer tok;
    private final EvaluatorActor.Settings settings;
    private final int[] heldoutIds;
    private List<int[]> klRows; // prompt + base answer, per task item (lazily: needs the base's answers)
    private List<Integer> klFrom; // first position of each row whose target is an answer token

    public Scorer(LlamaModel model, TextTokenizer tok, EvaluatorActor.Settings settings) {
        this(model, model, tok, settings);
    }

    /**
     * @param model the model whose adapters (or own trained weights) are scored
     * @param base the frozen base the KL is measured from ({@code model} itself for adapters)
     */
    public Scorer(LlamaModel model, LlamaModel base, TextTokenizer tok, EvaluatorActor.Settings settings) {
        this.model = model;
        this.base = base;
        this.tok = tok;
        this.settings = settings;
        this.heldoutIds = tok.encodeFramed(settings.heldout(), false);
    }

    /** The scores that do not depend on a sample: downstream sets, retention and KL to the base. */
    public record Fixed(Map<String, Double> downstream, double retentionLoss, double klToBase) {}

    /** Every score of one adapter ({@code op}) on the sample and the configured sets. */
    public Scores score(LinearOp op, Sample sample) {
        return score(op, sample, fixed(op));
    }

    /** The sample's scores of {@code op} with {@code fixed} (computed earlier for the same op). */
    public Scores score(LinearOp op, Sample sample, Fixed fixed) {
        Autograd.off();
        double charAcc = Double.NaN;
        double exact = Double.NaN;
        if (!sample.facts().isEmpty()) {
            // greedy answers, batched; each cut to its own budget (greedy is causal: later tokens change nothing before)
            List<int[]> prompts = new ArrayList<>();
            int[] budgets = new int[sample.facts().size()];
            for (int i = 0; i < budgets.length; i++) {
                Sample.Fact f = sample.facts().get(i);
                prompts.add(tok.encodeFramed(f.prompt(), false));
                budgets[i] = tok.encode(f.completion()).length + 2;
            }
            List<Generator.Answer> got = new Generator(model, tok, op).greedyBatch(prompts,
                    GenerationConfig.greedy(Arrays.stream(budgets).max().orElse(1)));
            double sum = 0;
            int hits = 0;
            for (int i = 0; i < budgets.length; i++) {
                int[] ids = got.get(i).ids();
                String text = tok.decode(Arrays.copyOf(ids, Math.min(ids.length, budgets[i])));
                Sample.Fact f = sample.facts().get(i);
                sum += TextMetrics.charAccuracy(text, f.completion());
                hits += TextMetrics.exactMatch(text, f.completion()) ? 1 : 0;
            }
            charAcc = sum / sample.facts().size();
            exact = (double) hits / sample.facts().size();
        }
        double memLoss = sample.texts().isEmpty() ? Double.NaN : rowsLoss(op, sample.texts());
        return new Scores(charAcc, memLoss, fixed.downstream(), fixed.retentionLoss(), exact, Double.NaN, fixed.klToBase());
    }

    /** Downstream accuracies, retention loss and KL to the base of {@code op}. */
    public Fixed fixed(LinearOp op) {
        Autograd.off();
        Map<String, Double> downstream = new LinkedHashMap<>();
        if (!settings.tasks().isEmpty()) {
            List<String> answers = answers(op);
            Map<String, double[]> acc = new LinkedHashMap<>(); // set -> {n, char}
            for (int i = 0; i < answers.size(); i++) {
                TaskSet.Item it = settings.tasks().get(i);
                double[] a = acc.computeIfAbsent(it.set(), k -> new double[2]);
                a[0]++;
                a[1] += TextMetrics.charAccuracy(answers.get(i).strip(), it.answer().strip());
            }
            acc.forEach((k, a) -> downstream.put(k, a[1] / a[0]));
        }
        return new Fixed(downstream, retentionLoss(op), isBase(op) ? 0.0 : klToBase(op));
    }

    private boolean isBase(LinearOp op) {
        return op == LinearOp.PLAIN && model == base;
    }

    /** Greedy answers of {@code op} to every task item, cut at the first newline (as {@link TaskSet#evaluate}). */
    List<String> answers(LinearOp op) {
        GenerationConfig cfg = new GenerationConfig(settings.maxNewTokens(), 0, 1.0, 0, List.of("\n"), true);
        List<int[]> prompts = settings.tasks().stream().map(it -> tok.encodeFramed(it.prompt(), false)).toList();
        List<Generator.Answer> got = new Generator(model, tok, op).greedyBatch(prompts, cfg);
        List<String> out = new ArrayList<>();
        boolean base = isBase(op) && klRows == null;
        List<int[]> rows = base ? new ArrayList<>() : null;
        List<Integer> from = base ? new ArrayList<>() : null;
        for (int i = 0; i < prompts.size(); i++) {
            int[] prompt = prompts.get(i);
            Generator.Answer r = got.get(i);
            out.add(r.text());
            if (base) {
                int[] row = Arrays.copyOf(prompt, prompt.length + r.ids().length);
                System.arraycopy(r.ids(), 0, row, prompt.length, r.ids().length);
                rows.add(row);
                from.add(prompt.length - 1);
            }
        }
        if (base) {
            klRows = rows;
            klFrom = from;
        }
        return out;
    }

    /**
     * Mean KL(p_base || p_op) over the positions that predict the base's answer tokens of every task
     * item (NaN without task items). The base's answers are generated on first use.
     */
    public double klToBase(LinearOp op) {
        if (settings.tasks().isEmpty()) {
            return Double.NaN;
        }
        if (klRows == null) {
            new Scorer(base, tok, settings).copyKlRowsTo(this);
        }
        Autograd.off();
        // rows of equal length share a forward
        Map<Integer, List<Integer>> byLength = new TreeMap<>();
        for (int i = 0; i < klRows.size(); i++) {
            if (klRows.get(i).length > klFrom.get(i) + 1) {
                byLength.computeIfAbsent(klRows.get(i).length, k -> new ArrayList<>()).add(i);
            }
        }
        double sum = 0;
        double count = 0;
        try (NDManager root = NDManager.newBaseManager(model.device())) {
            for (Map.Entry<Integer, List<Integer>> e : byLength.entrySet()) {
                int len = e.getKey();
                List<Integer> idx = e.getValue();
                for (int at = 0; at < idx.size(); at += KL_BATCH) {
                    List<Integer> part = idx.subList(at, Math.min(idx.size(), at + KL_BATCH));
                    int[][] x = new int[part.size()][];
                    float[] mask = new float[part.size() * (len - 1)];
                    for (int r = 0; r < part.size(); r++) {
                        int i = part.get(r);
                        x[r] = Arrays.copyOf(klRows.get(i), len - 1);
                        for (int j = klFrom.get(i); j < len - 1; j++) {
                            mask[r * (len - 1) + j] = 1f;
                        }
                    }
                    try (NDManager m = root.newSubManager()) {
                        NDArray ids = model.ids(m, x); // (B, T)
                        NDArray ref = base.forward(ids, null, LinearOp.PLAIN); // (B, T, V)
                        NDArray adapted = model.forward(ids, null, op); // (B, T, V)
                        NDArray mk = m.create(mask, new Shape(part.size(), len - 1)).toDevice(model.device(), false);
                        sum += Losses.klSum(adapted, ref, mk).getFloat();
                    }
                    for (float v : mask) {
                        count += v;
                    }
                }
            }
        }
        return count == 0 ? Double.NaN : sum / count;
    }

    /** Generates the base's answers here (this scorer's model is the base) and hands its KL rows to {@code other}. */
    private void copyKlRowsTo(Scorer other) {
        answers(LinearOp.PLAIN);
        other.klRows = klRows;
        other.klFrom = klFrom;
    }

    /** Mean next-token loss of whole rows {@code (T + 1)} through {@code op}. */
    double rowsLoss(LinearOp op, List<int[]> rows) {
        double nll = 0;
        long count = 0;
        try (NDManager root = NDManager.newBaseManager(model.device())) {
            for (int[] row : rows) {
                try (NDManager m = root.newSubManager()) {
                    int[][] x = {Arrays.copyOf(row, row.length - 1)};
                    int[][] y = {Arrays.copyOfRange(row, 1, row.length)};
                    NDArray logits = model.forward(model.ids(m, x), null, op); // (1, T, V)
                    nll += Losses.nllSum(logits, model.ids(m, y), null).getFloat();
                    count += row.length - 1;
                }
            }
        }
        return nll / count;
    }

    /** Mean loss on the held-out text in consecutive windows, through {@code op}. */
    double retentionLoss(LinearOp op) {
        return heldoutIds.length < 2 ? Double.NaN : Perplexity.evaluate(model, heldoutIds, settings.window(), op).loss();
    }
}
