package dev.morastream.actors.evaluator;

import dev.morastream.actors.TinyModelFixture;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.actors.supervisor.Scores;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.eval.Perplexity;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.train.IncrementalTrainer;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerConfig;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The evaluator on the shipped tiny model: a memorising adapter scores above the base, with detached adapters. */
class EvaluatorActorTest extends TinyModelFixture {
    static final int T = 64; // a row holds the whole 49-token record


    @TempDir
    Path tmp;


    /** Rows that repeat one BOS prompt completion EOS record; the completion mask marks the completion and EOS. */
    static int[] record(String prompt, String completion) {
        int[] p = tok.encode(prompt);
        int[] c = tok.encode(completion);
        int[] r = new int[p.length + c.length + 2];
        r[0] = tok.bos();
        System.arraycopy(p, 0, r, 1, p.length);
        System.arraycopy(c, 0, r, 1 + p.length, c.length);
        r[r.length - 1] = tok.eos().iterator().next();
        return r;
    }

    static EvaluatorActor.Settings settings() throws Exception {
        List<TaskSet.Item> tasks = new ArrayList<>();
        for (TaskSet.Item i : TaskSet.load(TINY.resolve("eval/tasks.jsonl"))) {
            if (tasks.stream().filter(t -> t.set().equals(i.set())).count() < 4) {
                tasks.add(i);
            }
        }
        String heldout = Files.readString(TINY.resolve("eval/heldout.txt"), StandardCharsets.UTF_8).substring(0, 3000);
        return new EvaluatorActor.Settings(tasks, heldout, 128, 12);
    }

    @Test
    void memorisingAdapterBeatsTheBaseOnTheSameSetsWithoutTouchingTheModel() throws Exception {
        String prompt = "Q: What is the capital of Zorbland?\nA:";
        String answer = " Quixotta";
        int[] rec = record(prompt, answer);
        int promptEnd = 1 + tok.encode(prompt).length;
        int[][] rows = new int[2][T + 1];
        float[][] mask = new float[2][T];
        for (int r = 0; r < 2; r++) {
            for (int j = 0; j <= T; j++) {
                int k = (j + r * 5) % rec.length;
                rows[r][j] = rec[k];
                if (j > 0) {
                    mask[r][j - 1] = k >= promptEnd || k == 0 ? 1f : 0f;
                }
            }
        }
        Path adapter = tmp.resolve("adapter");
        long tTrain = System.nanoTime();
        var pool = java.util.concurrent.Executors.newSingleThreadExecutor();
        pool.submit(() -> {
            dev.morastream.models.llama.Autograd.off();
            try (IncrementalTrainer tr = new IncrementalTrainer(model, AdapterSpec.mora(8, MoraVariant.ROTATION), TrainerConfig.constant(3e-3))) {
                TrainBatch b = new TrainBatch(rows, null, mask);
                for (int i = 0; i < 20; i++) {
                    tr.step(b);
                }
                AdapterFiles.save(tr.adapters(), adapter, "tiny");
            }
            return null;
        }).get();
        pool.shutdown();
        System.out.printf("trained 20 steps in %d ms%n", (System.nanoTime() - tTrain) / 1_000_000);

        EvaluatorActor.Settings s = settings();
        ActorRef<EvaluatorActor.Command> eval = kit.spawn(EvaluatorActor.create(model, tok, s), "evaluator", EvaluatorActor.DISPATCHER);
        Sample sample = new Sample(List.of(new Sample.Fact(prompt, answer)), List.of(rows[0], rows[1]));
        long t0 = System.nanoTime();
        EvaluatorActor.Evaluation e = AskPattern.<EvaluatorActor.Command, EvaluatorActor.Evaluation>askWithStatus(eval,
                        r -> new EvaluatorActor.Evaluate(adapter, Optional.empty(), sample, r), Duration.ofSeconds(60), kit.scheduler())
                .toCompletableFuture().get(90, TimeUnit.SECONDS);
        System.out.printf("evaluation in %d ms%n  candidate %s%n  base      %s%n", (System.nanoTime() - t0) / 1_000_000,
                e.candidate(), e.serving());
        Scores c = e.candidate();
        Scores base = e.serving();
        assertTrue(c.finite() && base.finite(), e.toString());
        assertTrue(c.memorizationCharAcc() > base.memorizationCharAcc() + 0.3, e.toString());
        assertTrue(c.memorizationLoss() < base.memorizationLoss(), e.toString());
        assertTrue(c.memorizationExactMatch() >= 0 && c.memorizationExactMatch() <= 1, e.toString());
        assertTrue(c.memorizationExactMatch() >= base.memorizationExactMatch(), e.toString());
        assertEquals(base.downstream().keySet(), c.downstream().keySet());
        assertTrue(base.downstream().size() >= 2, base.downstream().toString());

        // retention through the explicit op equals the models module's perplexity on the base (naive reference)
        double ref = Perplexity.evaluate(model, tok, s.heldout(), s.window()).loss();
        assertEquals(ref, base.retentionLoss(), 1e-4);
    }
}
