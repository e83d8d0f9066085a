package dev.morastream.actors;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.nio.file.Path;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/** An actor test kit and the shipped tiny base model, shared by the tests of one class. */
public abstract class TinyModelFixture {
    public static final Path TINY = Path.of("..", "base-models", "tiny").toAbsolutePath().normalize();

    protected static ActorTestKit kit;
    protected static NDManager root;
    protected static LlamaModel model;
    protected static TextTokenizer tok;

    @BeforeAll
    static void load() {
        kit = ActorTestKit.create();
        root = NDManager.newBaseManager();
        model = LlamaModel.load(TINY, root);
        tok = TextTokenizer.forModel(TINY, model.config());
    }

    @AfterAll
    static void close() {
        kit.shutdownTestKit();
        model.close();
        root.close();
    }
}
