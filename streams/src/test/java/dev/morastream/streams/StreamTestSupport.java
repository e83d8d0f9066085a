package dev.morastream.streams;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.pattern.Patterns;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.impl.PhasedFusingActorMaterializer;
import org.apache.pekko.stream.impl.StreamSupervisor;

/** What pekko-stream-testkit's {@code assertAllStagesStopped} does (that testkit is not published for Pekko 1.7). */
final class StreamTestSupport {
    private StreamTestSupport() {}

    static void assertAllStagesStopped(ActorTestKit kit, Materializer mat) {
        ActorRef supervisor = ((PhasedFusingActorMaterializer) mat).supervisor();
        TestProbe<Object> probe = kit.createTestProbe();
        probe.awaitAssert(Duration.ofSeconds(10), Duration.ofMillis(100), () -> {
            Object reply = Patterns.ask(supervisor, StreamSupervisor.GetChildren$.MODULE$, Duration.ofSeconds(3))
                    .toCompletableFuture().get(3, TimeUnit.SECONDS);
            StreamSupervisor.Children c = (StreamSupervisor.Children) reply;
            assertTrue(c.children().isEmpty(), "stages still running: " + c.children());
            return null;
        });
        mat.shutdown();
    }

    static <T> T await(CompletionStage<T> stage, Duration timeout) throws Exception {
        return stage.toCompletableFuture().get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    }
}
