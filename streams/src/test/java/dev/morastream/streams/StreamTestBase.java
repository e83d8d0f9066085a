package dev.morastream.streams;

import static dev.morastream.streams.StreamTestSupport.assertAllStagesStopped;

import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.stream.Materializer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;

/**
 * A materializer per test, and after each test: what the test registered in {@link #toClose} is
 * closed, then every stage of the materializer must have stopped. Subclasses set {@link #kit} in
 * their {@code @BeforeAll}.
 */
abstract class StreamTestBase {
    protected static ActorTestKit kit;
    protected Materializer mat;
    protected final List<AutoCloseable> toClose = new ArrayList<>();

    @BeforeEach
    void materializer() {
        mat = Materializer.createMaterializer(kit.system());
    }

    @AfterEach
    void stagesStopped() throws Exception {
        for (AutoCloseable c : toClose) {
            c.close();
        }
        assertAllStagesStopped(kit, mat);
    }
}
