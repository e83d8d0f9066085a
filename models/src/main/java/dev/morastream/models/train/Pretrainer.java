package dev.morastream.models.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.corpus.SyntheticCorpus;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Consumer;

/**
 * Full training of every weight of a model on the synthetic corpus: AdamW, warmup + cosine,
 * global gradient clipping, one NDManager per step.
 */
public final class Pretrainer {
    /** A progress report. {@code heldOutLoss} is NaN when not evaluated at this step. */
    public record Progress(int step, int steps, double loss, double lr, double gradNorm, double tokensPerSec,
            double etaSeconds, double heldOutLoss) {}

    /** The outcome of a run. */
    public record Result(int steps, long tokens, double finalLoss, double heldOutLoss, double seconds) {}

    private final LlamaModel model;
    private final TextTokenizer tokenizer;
    private final SyntheticCorpus corpus;
    private final PretrainConfig cfg;

    public Pretrainer(LlamaModel model, TextTokenizer tokenizer, SyntheticCorpus corpus, PretrainConfig cfg) {
        if (cfg.seqLen() > model.config().maxPositionEmbeddings()) {
            throw new IllegalArgumentException("seq-len " + cfg.seqLen() + " exceeds the model context "
                    + model.config().maxPositionEmbeddings());
        }
        this.model = model;
        this.tokenizer = tokenizer;
        this.corpus = corpus;
        this.cfg = cfg;
    }

    /** Endless token stream of documents, each framed by BOS and EOS. */
    static final class TokenStream {
        private final SyntheticCorpus corpus;
        private final TextTokenizer tok;
        private final Random rnd;
        private int[] buf = new int[0];
        private int pos;

        TokenStream(SyntheticCorpus corpus, TextTokenizer tok, long seed) {
            this.corpus = corpus;
            this.tok = tok;
            this.rnd = new Random(seed);
        }

        int next() {
            while (pos >= buf.length) {
                int[] b = tok.encodeFramed(corpus.document(rnd), true);
                buf = b;
                pos = 0;
            }
            return buf[pos++];
        }

        /** {@code rows} windows of {@code len + 1} consecutive tokens. */
        int[][] windows(int rows, int len) {
            int[][] w = new int[rows][len + 1];
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j <= len; j++) {
                    w[r][j] = next();
                }
            }
            return w;
        }
    }

    static int[][] inputs(int[][] w) {
        int[][] x = new int[w.length][];
        for (int i = 0; i < w.length; i++) {
            x[i] = java.util.Arrays.copyOf(w[i], w[i].length - 1);
        }
        return x;
    }

    static int[][] targets(int[][] w) {
        int[][] y = new int[w.length][];
        for (int i = 0; i < w.length; i++) {
            y[i] = java.util.Arrays.copyOfRange(w[i], 1, w[i].length);
        }
        return y;
    }

    /** Runs all steps; {@code progress} is called every {@code logEvery} steps and at evaluations. */
    public Result run(Consumer<Progress> progress) {
        Map<String, NDArray> trainable = new LinkedHashMap<>(model.weights());
        trainable.values().forEach(a -> a.setRequiresGradient(true));
        LrSchedule sched = new LrSchedule(LrSchedule.Kind.COSINE, cfg.lr(), cfg.warmupSteps(), cfg.steps(), cfg.minLrRatio());
        TokenStream data = new TokenStream(corpus, tokenizer, cfg.seed());
        int[][] heldOut = new TokenStream(corpus, tokenizer, cfg.seed() ^ 0x0DDBA11L).windows(8, cfg.seqLen());
        long tokensPerStep = (long) cfg.batchSize() * cfg.seqLen();
        long start = System.nanoTime();
        double loss = Double.NaN;
        double held = Double.NaN;
        try (AdamW opt = AdamW.withDefaults(model.manager(), cfg.weightDecay())) {
            for (int step = 0; step < cfg.steps(); step++) {
                int[][] w = data.windows(cfg.batchSize(), cfg.seqLen());
                double lr = sched.lr(step);
                double gradNorm;
                try (NDManager sm = model.manager().newSubManager()) {
                    NDArray x = model.ids(sm, inputs(w)); // (B, T)
                    NDArray y = model.ids(sm, targets(w)); // (B, T)
                    try (Autograd.Recording rec = Autograd.record()) {
                        NDArray l = Losses.mean(model.forward(x, null, LinearOp.PLAIN), y, null); // ()
                        rec.backward(l);
                        loss = l.getFloat();
                    }
                    List<NDArray> grads = Gradients.collect(trainable, sm);
                    gradNorm = Gradients.clip(grads, cfg.clipNorm());
                    if (Double.isFinite(loss) && Double.isFinite(gradNorm)) {
                        List<AdamW.Slot> slots = new ArrayList<>();
                        int i = 0;
                        for (Map.Entry<String, NDArray> e : trainable.entrySet()) {
                            boolean decay = e.getValue().getShape().dimension() == 2 && !e.getKey().contains("embed_tokens");
                            slots.add(new AdamW.Slot(e.getKey(), e.getValue(), grads.get(i++), decay));
                        }
                        opt.update(slots, lr, sm);
                    }
                    Gradients.zero(trainable.values());
                }
                boolean last = step == cfg.steps() - 1;
                boolean eval = last || (cfg.evalEvery() > 0 && (step + 1) % cfg.evalEvery() == 0);
                if (eval) {
                    held = heldOutLoss(heldOut);
                }
                if (eval || last || (step + 1) % Math.max(1, cfg.logEvery()) == 0) {
                    double secs = (System.nanoTime() - start) / 1e9;
                    double tps = tokensPerStep * (step + 1) / secs;
                    double eta = secs / (step + 1) * (cfg.steps() - step - 1);
                    progress.accept(new Progress(step + 1, cfg.steps(), loss, lr, gradNorm, tps, eta, eval ? held : Double.NaN));
                }
            }
        } finally {
            trainable.values().forEach(a -> a.setRequiresGradient(false));
        }
        double secs = (System.nanoTime() - start) / 1e9;
        return new Result(cfg.steps(), tokensPerStep * cfg.steps(), loss, held, secs);
    }

    /** Mean loss on fixed held-out windows, without gradients. */
    private double heldOutLoss(int[][] windows) {
        try (NDManager sm = model.manager().newSubManager()) {
            NDArray x = model.ids(sm, inputs(windows));
            NDArray y = model.ids(sm, targets(windows));
            return Losses.mean(model.forward(x, null, LinearOp.PLAIN), y, null).getFloat();
        }
    }
}
