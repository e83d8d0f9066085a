package dev.morastream.ops.run;

import ai.djl.ndarray.NDManager;
import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.evaluator.Sample;
import dev.morastream.actors.evaluator.Scorer;
import dev.morastream.actors.supervisor.Scores;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.DocumentPacker;
import dev.morastream.models.train.IncrementalTrainer;
import dev.morastream.models.train.LrSchedule;
import dev.morastream.models.train.PseudoRehearsal;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerConfig;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.replay.ReplayMixer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Consumer;

/**
 * The learn/forget benchmark: trains facts of a synthetic world the base never saw (the demo's kind:
 * capitals of new countries, jobs of new people) the way the streaming trainer does (packed
 * prompt/completion rows, the same {@link ReplayMixer} with pseudo-rehearsal and general rows, the
 * same KL-to-base term) and scores, every {@code evalEvery} steps, with the evaluator's own {@link
 * Scorer}: the new facts' accuracy, every downstream set, retention and the KL from the base. Full
 * fine-tuning trains a copy of the base and is measured against the untouched original.
 */
public final class ContinualBench {
    /**
     * @param facts new facts (half capitals, half jobs)
     * @param replay share of each batch's rows that are replayed (0: no rehearsal, no general rows)
     * @param rehearsalShare share of the replayed rows that are pseudo-rehearsal (the base's answers)
     * @param generalShare share of the replayed rows from the general corpus
     * @param klWeight weight of the KL-to-base term (0: off)
     * @param klOnPrompts the KL also on the new rows' prompts
     */
    public record Settings(AdapterSpec.Method method, MoraVariant variant, int rank, int facts, double replay,
                           double rehearsalShare, double generalShare, double klWeight, boolean klOnPrompts, double lr, int steps,
                           int evalEvery, int batchSize, int seqLen, long seed) {}

    /** One evaluation. */
    public record Point(String method, String variant, int rank, long trainableParams, long step, double newCharAcc,
                        double newExact, Map<String, Double> downstream, double worstDrop, double retentionLoss, double klToBase,
                        double replay, double klWeight, double lr, double seconds, double stepMs, double trainKl) {}

    private ContinualBench() {}

    /**
     * @param modelDir the base model (its {@code eval/tasks.jsonl} and {@code eval/heldout.txt} are
     *     the downstream sets, retention text and rehearsal sources)
     * @param cacheDir where the pseudo-rehearsal answers are cached
     */
    public static void run(Settings s, Path modelDir, Path cacheDir, Consumer<Point> sink, Consumer<String> progress)
            throws IOException {
        List<TaskSet.Item> tasks = TaskSet.load(modelDir.resolve("eval").resolve("tasks.jsonl"));
        String heldout = Files.readString(modelDir.resolve("eval").resolve("heldout.txt"), StandardCharsets.UTF_8);
        int retentionChars = Math.min(4000, heldout.length());
        EvaluatorActor.Settings es = new EvaluatorActor.Settings(tasks, heldout.substring(0, retentionChars), 128, 12);
        List<DemoFeed.Fact> facts = DemoFeed.facts(s.seed() + 424242, s.facts() / 2, s.facts() - s.facts() / 2);
        Sample sample = new Sample(facts.stream().map(f -> new Sample.Fact(f.prompt(), f.completion())).toList(), List.of());
        boolean full = s.method() == AdapterSpec.Method.FULL;
        AdapterSpec spec = switch (s.method()) {
            case LORA -> AdapterSpec.lora(s.rank(), 2.0 * s.rank());
            case MORA -> AdapterSpec.mora(s.rank(), s.variant());
            case FULL -> AdapterSpec.full();
        };
        TrainerConfig tc = new TrainerConfig(s.lr(), LrSchedule.Kind.CONSTANT, 10, s.steps(), 1.0, 0.0, 1.0, 1, true, false, 0, 0,
                s.klWeight(), s.klOnPrompts());
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.load(modelDir, root);
                LlamaModel reference = full ? LlamaModel.load(modelDir, root) : null;
                TextTokenizer tok = TextTokenizer.forModel(modelDir, model.config())) {
            LlamaModel base = full ? reference : model;
            ReplayMixer mixer = null;
            if (s.replay() > 0) {
                List<String> prompts = new ArrayList<>(tasks.stream().map(TaskSet.Item::prompt).toList());
                prompts.addAll(PseudoRehearsal.linePrompts(heldout.substring(retentionChars), 200));
                PseudoRehearsal.Loaded rehearsal = PseudoRehearsal.loadOrGenerate(cacheDir, PseudoRehearsal.identity(modelDir),
                        prompts, 24, base, tok, progress);
                progress.accept("pseudo-rehearsal: " + rehearsal.pairs().size() + " answers "
                        + (rehearsal.generated() ? "generated into " : "read from ") + rehearsal.file());
                mixer = new ReplayMixer(new ReplayMixer.Config(s.replay(), 1024, s.generalShare(), 2000, s.seed(), s.rehearsalShare()),
                        tok, s.seqLen(), PseudoRehearsal.rows(rehearsal.pairs(), tok, s.seqLen(), s.seed()));
            }
            Scorer scorer = new Scorer(model, base, tok, es);
            Scores baseScores = new Scorer(base, tok, es).score(dev.morastream.models.llama.LinearOp.PLAIN, sample);
            long t0 = System.nanoTime();
            try (IncrementalTrainer tr = new IncrementalTrainer(model, spec, tc, reference)) {
                String variant = spec.method() == AdapterSpec.Method.MORA ? spec.resolvedVariant().id() : "";
                long params = tr.adapters().trainableParameters();
                sink.accept(point(s, variant, params, 0, baseScores, baseScores, 0, Double.NaN, Double.NaN));
                double ms = 0;
                double kl = 0;
                int n = 0;
                FactStream data = new FactStream(facts, tok, s.seqLen(), s.seed());
                for (int step = 1; step <= s.steps(); step++) {
                    TrainBatch b = data.next(s.batchSize());
                    if (mixer != null) {
                        b = mixer.mix(new PackedBatch("bench", b, Map.of(), Map.of(), List.of(), step)).batch();
                    }
                    dev.morastream.models.train.StepResult r = tr.step(b);
                    ms += r.millis();
                    kl += r.klToBase();
                    n++;
                    if (step % s.evalEvery() == 0 || step == s.steps()) {
                        Scores sc = scorer.score(tr.op(), sample);
                        sink.accept(point(s, variant, params, step, sc, baseScores, (System.nanoTime() - t0) / 1e9, ms / n, kl / n));
                        ms = 0;
                        kl = 0;
                        n = 0;
                    }
                }
            }
        }
    }

    private static Point point(Settings s, String variant, long params, long step, Scores sc, Scores base, double seconds,
            double stepMs, double trainKl) {
        return new Point(s.method().name().toLowerCase(java.util.Locale.ROOT), variant, s.rank(), params, step,
                sc.memorizationCharAcc(), sc.memorizationExactMatch(), new LinkedHashMap<>(sc.downstream()),
                sc.worstDownstreamDrop(base), sc.retentionLoss(), sc.klToBase(), s.replay(), s.klWeight(), s.lr(), seconds, stepMs, trainKl);
    }

    /**
     * The facts as the demo feed produces them (each round in a new shuffled order), packed into
     * prompt/completion rows as the stream's packer does; endless.
     */
    static final class FactStream {
        private final List<DemoFeed.Fact> facts;
        private final TextTokenizer tok;
        private final int seqLen;
        private final Random random;
        private final List<int[]> rows = new ArrayList<>();
        private final List<float[]> completion = new ArrayList<>();

        FactStream(List<DemoFeed.Fact> facts, TextTokenizer tok, int seqLen, long seed) {
            this.facts = facts;
            this.tok = tok;
            this.seqLen = seqLen;
            this.random = new Random(seed);
        }

        TrainBatch next(int n) {
            while (rows.size() < n) {
                List<DemoFeed.Fact> round = new ArrayList<>(facts);
                Collections.shuffle(round, random);
                DocumentPacker p = new DocumentPacker(tok, seqLen);
                round.forEach(f -> p.add(new DocumentPacker.Document(f.prompt(), f.completion())));
                for (int i = 0; i < p.windows(); i++) {
                    float[] c = new float[seqLen];
                    rows.add(p.window(i, c));
                    completion.add(c);
                }
            }
            int[][] t = new int[n][];
            float[][] c = new float[n][];
            for (int i = 0; i < n; i++) {
                t[i] = rows.remove(0);
                c[i] = completion.remove(0);
            }
            return new TrainBatch(t, null, c);
        }
    }
}
