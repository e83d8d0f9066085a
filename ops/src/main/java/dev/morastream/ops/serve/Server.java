package dev.morastream.ops.serve;

import dev.morastream.actors.serving.ServingPool;
import ai.djl.ndarray.NDManager;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.ops.metrics.Metrics;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.http.javadsl.ServerBinding;

/**
 * A running serving process: base model, optional adapter registry, pool, HTTP API. Warm-up (the
 * readiness generation) starts at once and runs in the background.
 */
public final class Server implements AutoCloseable {

    /**
     * @param model HuggingFace-layout base model directory; its name is the base model's id
     * @param registry adapter registry directory, or {@code null} for the base model only
     * @param keep versions the registry keeps per domain
     */
    public record Config(Path model, Path registry, int keep, String host, int port, ServingPool.Options pool, HttpApi.Settings http) {}

    private final NDManager root;
    private final LlamaModel model;
    private final TextTokenizer tokenizer;
    private final Metrics metrics;
    private final ServingPool pool;
    private final HttpApi api;
    private final ActorSystem<Void> system;
    private final ServerBinding binding;
    private final CompletableFuture<Void> warm;

    private Server(Config c) throws Exception {
        root = NDManager.newBaseManager();
        model = LlamaModel.load(c.model(), root);
        tokenizer = TextTokenizer.forModel(c.model(), model.config());
        metrics = new Metrics();
        AdapterRegistry reg = c.registry() == null ? null : new AdapterRegistry(c.registry(), c.keep());
        pool = new ServingPool(model, tokenizer, c.model().toAbsolutePath().normalize().getFileName().toString(), reg, c.pool(), metrics.registry());
        api = new HttpApi(pool, metrics, c.http(), null, null, ChatTemplate.forModel(c.model()));
        system = ActorSystem.create(Behaviors.empty(), "mora-serve");
        binding = api.bind(system, c.host(), c.port()).toCompletableFuture().get(30, TimeUnit.SECONDS);
        warm = pool.warmUp();
    }

    /** Loads the model and binds; throws when either fails (everything opened so far is closed). */
    public static Server start(Config c) throws Exception {
        return new Server(c);
    }

    public int port() {
        return binding.localAddress().getPort();
    }

    public ServingPool pool() {
        return pool;
    }

    /** The meters of {@code /metrics}. */
    public io.micrometer.core.instrument.MeterRegistry meters() {
        return metrics.registry();
    }

    /** Completes when the readiness generation succeeded (fails with its error). */
    public CompletableFuture<Void> warm() {
        return warm;
    }

    /** Completes when the actor system has terminated (after {@link #close}). */
    public CompletableFuture<?> terminated() {
        return system.getWhenTerminated().toCompletableFuture();
    }

    @Override
    public void close() throws Exception {
        binding.unbind().toCompletableFuture().get(10, TimeUnit.SECONDS);
        system.terminate();
        system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
        api.close();
        pool.close();
        metrics.close();
        tokenizer.close();
        model.close();
        root.close();
    }
}
