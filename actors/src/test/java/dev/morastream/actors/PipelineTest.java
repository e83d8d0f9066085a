package dev.morastream.actors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterRegistryActor;
import dev.morastream.actors.supervisor.PromotionPolicy;
import dev.morastream.actors.supervisor.PromotionSupervisor;
import dev.morastream.actors.trainer.TrainerActor;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerConfig;
import dev.morastream.streams.BatchSink;
import dev.morastream.streams.pack.PackedBatch;
import dev.morastream.streams.pack.ResumePoint;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.TopicPartition;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Trainer -> registry -> supervisor -> evaluator -> alias, on the tiny model: a checkpoint trained on
 * a new fact is published, scored against the base on the facts the trainer sampled, promoted, and
 * the listener (serving) is told.
 */
class PipelineTest extends TinyModelFixture {
    static final int T = 64;


    @TempDir
    Path tmp;


    @Test
    void aTrainedFactIsEvaluatedAndPromoted() throws Exception {
        AdapterRegistry registry = new AdapterRegistry(tmp.resolve("registry"), 5);
        ActorRef<AdapterRegistryActor.Command> reg = kit.spawn(AdapterRegistryActor.create(registry), "registry", AdapterRegistryActor.DISPATCHER);
        List<TaskSet.Item> tasks = new ArrayList<>();
        for (TaskSet.Item i : TaskSet.load(TINY.resolve("eval/tasks.jsonl"))) {
            if (tasks.stream().filter(t -> t.set().equals(i.set())).count() < 3) {
                tasks.add(i);
            }
        }
        String heldout = Files.readString(TINY.resolve("eval/heldout.txt"), StandardCharsets.UTF_8).substring(0, 2000);
        ActorRef<EvaluatorActor.Command> eval = kit.spawn(EvaluatorActor.create(model, tok,
                new EvaluatorActor.Settings(tasks, heldout, 128, 12)), "evaluator", EvaluatorActor.DISPATCHER);
        // the gate here checks memorisation; the tolerances are wide because 20 steps on one fact at this
        // learning rate do make a tiny model forget (the gate tests cover regressions)
        Path audit = tmp.resolve("audit.jsonl");
        ActorRef<PromotionSupervisor.Command> sup = kit.spawn(PromotionSupervisor.create(reg, eval,
                new PromotionPolicy(0.2, 1.0, 10.0), audit, Duration.ofSeconds(60)), "supervisor", PromotionSupervisor.DISPATCHER);
        TestProbe<PromotionSupervisor.Event> serving = kit.createTestProbe();
        sup.tell(new PromotionSupervisor.Subscribe(serving.getRef()));

        TrainerActor.Settings s = TrainerActor.Settings.of("facts", AdapterSpec.mora(8, MoraVariant.ROTATION),
                TrainerConfig.constant(3e-3), tmp.resolve("ckpt")).withCheckpointEvery(20, null);
        ActorRef<TrainerActor.Command> trainer = kit.spawn(TrainerActor.create(s, model, tok, reg, sup), "trainer", TrainerActor.DISPATCHER);
        BatchSink sink = TrainerActor.sink(trainer, Duration.ofSeconds(30), kit.scheduler(), kit.system().executionContext());

        String prompt = "Q: What is the capital of Zorbland?\nA:";
        int[] p = tok.encode(prompt);
        int[] c = tok.encode(" Quixotta");
        int[] rec = new int[p.length + c.length + 2];
        rec[0] = tok.bos();
        System.arraycopy(p, 0, rec, 1, p.length);
        System.arraycopy(c, 0, rec, 1 + p.length, c.length);
        rec[rec.length - 1] = tok.eos().iterator().next();
        TopicPartition tp = new TopicPartition("facts", 0);
        Map<TopicPartition, Long> durable = Map.of();
        for (int step = 0; step < 20; step++) {
            int[][] rows = new int[2][T + 1];
            float[][] mask = new float[2][T];
            for (int r = 0; r < 2; r++) {
                for (int j = 0; j <= T; j++) {
                    int k = (j + r * 5 + step) % rec.length;
                    rows[r][j] = rec[k];
                    if (j > 0) {
                        mask[r][j - 1] = k > p.length || k == 0 ? 1f : 0f;
                    }
                }
            }
            PackedBatch b = new PackedBatch("facts", new TrainBatch(rows, null, mask), Map.of(),
                    Map.of(tp, ResumePoint.at(step + 1)), List.of(), step);
            durable = sink.accept(b).toCompletableFuture().get(30, TimeUnit.SECONDS);
        }
        assertEquals(Map.of(tp, 20L), durable);

        PromotionSupervisor.Promoted promoted = serving.expectMessageClass(PromotionSupervisor.Promoted.class, Duration.ofSeconds(90));
        assertEquals("facts@v1", promoted.version().toString());
        assertEquals(Optional.of(promoted.version()), registry.alias("facts"));
        JsonNode line = new ObjectMapper().readTree(Files.readAllLines(audit).get(0));
        System.out.println("audit: " + line);
        assertEquals("promoted", line.path("decision").asText());
        double cand = line.path("candidate_scores").path("memorizationCharAcc").asDouble();
        double base = line.path("serving_scores").path("memorizationCharAcc").asDouble();
        assertTrue(cand >= base + 0.2, line.toString());
        // the trainer's progressive loss travels with the candidate's scores
        assertTrue(Double.isFinite(line.path("candidate_scores").path("progressiveLoss").asDouble(Double.NaN)), line.toString());
        assertTrue(line.path("candidate_scores").has("memorizationExactMatch"), line.toString());
        kit.stop(trainer);
    }
}
