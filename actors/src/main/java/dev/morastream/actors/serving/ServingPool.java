package dev.morastream.actors.serving;

import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.generate.DecodeBatch;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.GenerationResult;
import dev.morastream.models.generate.Generator;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * Answers generation requests on one frozen base model shared by every adapter version, with
 * continuous batching: one {@link ServingActor} owns a {@link DecodeBatch} in which up to {@link
 * Options#workers} requests decode together, one forward per step for all of them, rows of
 * different adapter versions sharing it (the base GEMMs once, each version's update on its own
 * rows, through the {@link LinearOp} of the version each request runs on). Requests join between
 * steps (the prompts of those joining together prefilled in one forward) and leave when they end or are
 * cancelled; a request gets exactly the tokens it would get alone (same sampler and seed).
 * Everything a request can ask is batched, echo and logprobs included (the prompt is scored in
 * its own prefill forward; top alternatives come from each row's logits on the CPU).
 *
 * <p>A request names {@code model}: the base model's name, a domain (its alias, read when the
 * request <em>starts</em>), or an exact {@code domain@vN}. Adapter versions are loaded detached on
 * first use and kept in an LRU cache of {@code maxLoaded}; a version evicted while requests still
 * use it is freed when the last of them ends. {@link #swap} loads the new version first, then moves
 * the domain's alias in one step: requests already running finish on the old version, requests
 * that start afterwards use the new one, and every {@link Served} names the version that produced it.
 * A full queue refuses at once with {@link Overloaded} (HTTP 429) instead of queueing without bound.
 */
public final class ServingPool implements AutoCloseable {

    /**
     * @param workers concurrent generations: rows that decode together in one batch
     * @param queueCapacity requests that may wait for a free row; more are refused
     * @param maxLoaded adapter versions kept in memory (aliased ones are evicted last)
     */
    public record Options(int workers, int queueCapacity, int maxLoaded) {
        public Options {
            if (workers < 1 || queueCapacity < 1 || maxLoaded < 1) {
                throw new IllegalArgumentException("workers, queueCapacity and maxLoaded must be >= 1");
            }
        }

        /** 16 rows, 64 waiting requests, 4 adapter versions in memory. */
        public static Options defaults() {
            return new Options(16, 64, 4);
        }
    }

    /** The requested model is neither the base, nor a domain with an alias, nor a stored version. */
    public static final class UnknownModel extends RuntimeException {
        public UnknownModel(String message) {
            super(message);
        }
    }

    /** The queue is full: try again later. */
    public static final class Overloaded extends RuntimeException {
        public Overloaded(String message) {
            super(message);
        }
    }

    /**
     * Hears one request's progress, on the batch loop's thread (a listener that blocks holds up
     * every row of the batch); throwing from a method aborts this request's generation only.
     */
    public interface Listener {
        /** Generation starts on {@code servedBy} (the base name or the exact {@code domain@vN}). */
        default void onStart(String servedBy) {}

        /** A text delta; the deltas concatenate to the result's text. */
        default void onText(String delta) {}
    }

    /**
     * A model name resolved at submission.
     *
     * @param domain metrics domain ({@code base} for the base model)
     * @param alias whether the version is read from the domain's alias when the request starts
     * @param fixed the exact version, or {@code null} (base model, or an alias)
     */
    private record Target(String domain, boolean alias, AdapterVersion fixed) {
        static final Target BASE = new Target(ServingMetrics.BASE_DOMAIN, false, null);
    }

    /** A loaded version and the requests using it. Guarded by {@code cache}. */
    private static final class Loaded {
        final AdapterVersion version;
        final CompletableFuture<AdapterSet> set = new CompletableFuture<>();
        int refs;
        boolean evicted;

        Loaded(AdapterVersion version) {
            this.version = version;
        }
    }

    private final LlamaModel model;
    private final TextTokenizer tokenizer;
    private final String baseName;
    private final AdapterRegistry registry; // null: base model only
    private final Options options;
    private static final AtomicInteger POOLS = new AtomicInteger();
    private final ActorSystem<Void> ownSystem; // null when the serving actors live in the caller's system
    private final ActorRef<ServingActor.Msg> queue;
    private final AtomicInteger admitted = new AtomicInteger(); // waiting + running
    private final AtomicInteger running = new AtomicInteger();
    private volatile boolean closed;
    private final ConcurrentHashMap<String, AdapterVersion> aliases = new ConcurrentHashMap<>();
    private final LinkedHashMap<AdapterVersion, Loaded> cache = new LinkedHashMap<>(16, 0.75f, true); // LRU order
    private final ServingMetrics metrics;
    private volatile boolean ready;

    /**
     * @param baseName the name under which the base model is served (e.g. {@code tiny})
     * @param registry adapter versions and aliases, or {@code null} to serve the base model only
     */
    public ServingPool(LlamaModel model, TextTokenizer tokenizer, String baseName, AdapterRegistry registry,
            Options options, MeterRegistry meters) {
        this(model, tokenizer, baseName, registry, options, meters, null);
    }

    /**
     * As above, with the serving actors spawned in {@code system} ({@code null}: in an actor
     * system of the pool's own, terminated by {@link #close}).
     */
    public ServingPool(LlamaModel model, TextTokenizer tokenizer, String baseName, AdapterRegistry registry,
            Options options, MeterRegistry meters, ActorSystem<?> system) {
        this.model = model;
        this.tokenizer = tokenizer;
        this.baseName = baseName;
        this.registry = registry;
        this.options = options;
        this.ownSystem = system == null ? ActorSystem.create(Behaviors.empty(), "mora-serving") : null;
        ActorSystem<?> sys = system != null ? system : ownSystem;
        this.queue = sys.systemActorOf(ServingActor.batcher(() -> new DecodeBatch(model, tokenizer, options.workers())),
                "serving-" + POOLS.incrementAndGet(), ServingActor.DISPATCHER);
        this.metrics = new ServingMetrics(meters, this::queueDepth, running::get, this::loadedCount);
    }

    public String baseName() {
        return baseName;
    }

    public LlamaModel model() {
        return model;
    }

    public TextTokenizer tokenizer() {
        return tokenizer;
    }

    public Optional<AdapterRegistry> registry() {
        return Optional.ofNullable(registry);
    }

    public Options options() {
        return options;
    }

    /** Whether a real generation has succeeded ({@link #warmUp}). */
    public boolean ready() {
        return ready;
    }

    /** Requests being generated now. */
    public int running() {
        return running.get();
    }

    /** Requests waiting for a worker. */
    public int queueDepth() {
        return Math.max(0, admitted.get() - running.get());
    }

    /**
     * Queues a generation.
     *
     * @param modelName base name, domain, or {@code domain@vN}
     * @param onText text deltas, called on the batch loop's thread ({@code null} for none); throwing from
     *     it aborts the generation (a client that went away)
     * @throws UnknownModel when {@code modelName} names nothing servable
     * @throws Overloaded when the queue is full
     */
    public CompletableFuture<Served> submit(String modelName, String prompt, GenerationConfig cfg, Consumer<String> onText) {
        return submit(modelName, prompt, cfg, onText == null ? (Listener) new Listener() {} : (Listener) new Listener() {
            @Override
            public void onText(String delta) {
                onText.accept(delta);
            }
        });
    }

    /** As {@link #submit(String, String, GenerationConfig, Consumer)}, also told which version runs it. */
    public CompletableFuture<Served> submit(String modelName, String prompt, GenerationConfig cfg, Listener listener) {
        return submit(modelName, tokenizer.encodeFramed(prompt, false), cfg, Generator.Scoring.NONE, listener);
    }

    /**
     * Queues a generation from prompt ids as given (nothing added), with log-probabilities as
     * {@code scoring} asks. Cancelling the returned future frees its slot at once: a request still
     * waiting is dropped, a running one stops before its next forward pass.
     */
    public CompletableFuture<Served> submit(String modelName, int[] promptIds, GenerationConfig cfg, Generator.Scoring scoring,
            Listener listener) {
        Target target = resolve(modelName);
        long queuedAt = System.nanoTime();
        CompletableFuture<Served> out = new CompletableFuture<>();
        if (closed) {
            metrics.rejected(target.domain());
            throw new Overloaded("the server is stopping");
        }
        if (admitted.incrementAndGet() > options.workers() + options.queueCapacity()) {
            admitted.decrementAndGet();
            metrics.rejected(target.domain());
            throw new Overloaded("serving queue is full (" + options.queueCapacity() + " waiting, "
                    + options.workers() + " running); retry later");
        }
        // a request cancelled while it waits gives its place back at once; the worker then skips it
        AtomicBoolean claimed = new AtomicBoolean();
        out.whenComplete((x, e) -> {
            if (out.isCancelled() && claimed.compareAndSet(false, true)) {
                admitted.decrementAndGet();
                metrics.cancelled(target.domain(), "none");
            }
        });
        queue.tell(new ServingActor.Submit(new Pending(target, promptIds, cfg, scoring, listener, queuedAt, out, claimed)));
        return out;
    }

    /**
     * Makes {@code version} the one new requests for its domain get. Loads it first (so the switch
     * itself is one reference write), then evicts what no longer fits.
     *
     * @return the version served before, if any
     */
    public Optional<AdapterVersion> swap(AdapterVersion version) {
        long t0 = System.nanoTime();
        Loaded l = acquire(version);
        AdapterVersion old;
        try {
            old = aliases.put(version.domain(), version);
        } finally {
            release(l);
        }
        evictExcess();
        metrics.swapped(version.domain(), System.nanoTime() - t0);
        return Optional.ofNullable(old);
    }

    /** The version new requests for {@code domain} get: the last swap, else the registry's alias. */
    public Optional<AdapterVersion> serving(String domain) {
        AdapterVersion v = aliases.get(domain);
        if (v != null || registry == null) {
            return Optional.ofNullable(v);
        }
        try {
            Optional<AdapterVersion> a = registry.alias(domain);
            a.ifPresent(x -> aliases.putIfAbsent(domain, x));
            return Optional.ofNullable(aliases.get(domain));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (IllegalArgumentException e) {
            return Optional.empty(); // not a valid domain name
        }
    }

    /** What {@code modelName} resolves to now: the base name or an exact version; empty when unknown. */
    public Optional<String> describe(String modelName) {
        try {
            Target t = resolve(modelName);
            if (t.alias()) {
                return Optional.of(serving(t.domain()).map(AdapterVersion::toString).orElse(modelName));
            }
            return Optional.of(t.fixed() == null ? baseName : t.fixed().toString());
        } catch (UnknownModel e) {
            return Optional.empty();
        }
    }

    /**
     * One-token generations on the base model and on every aliased domain; marks the pool ready
     * when all succeed.
     */
    public CompletableFuture<Void> warmUp() {
        List<String> names = new ArrayList<>();
        names.add(baseName);
        if (registry != null) {
            try {
                for (String d : registry.domains()) {
                    if (serving(d).isPresent()) {
                        names.add(d);
                    }
                }
            } catch (IOException e) {
                return CompletableFuture.failedFuture(e);
            }
        }
        List<CompletableFuture<Served>> all = new ArrayList<>();
        for (String n : names) {
            all.add(submit(n, "Q:", GenerationConfig.greedy(1).withStopOnEos(false), (Consumer<String>) null));
        }
        return CompletableFuture.allOf(all.toArray(CompletableFuture[]::new)).thenRun(() -> ready = true);
    }

    private Target resolve(String name) {
        if (name == null || name.isBlank()) {
            throw new UnknownModel("no model given");
        }
        if (name.equals(baseName)) {
            return Target.BASE;
        }
        if (registry == null) {
            throw new UnknownModel("unknown model '" + name + "': this server has no adapter registry; try '" + baseName + "'");
        }
        if (name.contains("@")) {
            AdapterVersion v;
            try {
                v = AdapterVersion.parse(name);
            } catch (IllegalArgumentException e) {
                throw new UnknownModel("unknown model '" + name + "': " + e.getMessage());
            }
            try {
                if (registry.get(v).isEmpty()) {
                    throw new UnknownModel("unknown model '" + name + "': no such adapter version");
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return new Target(v.domain(), false, v);
        }
        if (serving(name).isEmpty()) {
            throw new UnknownModel("unknown model '" + name + "': not the base model ('" + baseName
                    + "') nor a domain with a promoted adapter");
        }
        return new Target(name, true, null);
    }

    /** One request in the batch loop: resolves its version when it starts, answers when its row leaves. */
    private final class Pending implements ServingActor.Job {
        private final Target target;
        private final int[] promptIds;
        private final GenerationConfig cfg;
        private final Generator.Scoring scoring;
        private final Listener listener;
        private final long queuedAt;
        private final CompletableFuture<Served> out;
        private final AtomicBoolean claimed;
        private long started;
        private AdapterVersion version;
        private Loaded loaded;
        private String by;

        Pending(Target target, int[] promptIds, GenerationConfig cfg, Generator.Scoring scoring, Listener listener, long queuedAt,
                CompletableFuture<Served> out, AtomicBoolean claimed) {
            this.target = target;
            this.promptIds = promptIds;
            this.cfg = cfg;
            this.scoring = scoring;
            this.listener = listener;
            this.queuedAt = queuedAt;
            this.out = out;
            this.claimed = claimed;
        }

        @Override
        public DecodeBatch.Request start() {
            if (!claimed.compareAndSet(false, true)) {
                return null; // cancelled while it waited: its place was given back then
            }
            running.incrementAndGet();
            started = System.nanoTime();
            String domain = target.domain();
            try {
                // the alias is read now, when the request starts: running requests keep their version
                version = !target.alias() ? target.fixed()
                        : serving(domain).orElseThrow(() -> new UnknownModel("domain " + domain + " has no alias"));
                loaded = version == null ? null : acquire(version);
                LinearOp op = loaded == null ? LinearOp.PLAIN : loaded.set.join().op();
                by = version == null ? baseName : version.toString();
                listener.onStart(by);
                Generator.Scoring s = new Generator.Scoring(scoring.topLogprobs(), scoring.echo(),
                        () -> out.isDone() || scoring.cancelled().getAsBoolean());
                return new DecodeBatch.Request(promptIds, cfg, op, s, listener::onText);
            } catch (Throwable t) {
                fail(t);
                return null;
            }
        }

        @Override
        public void end(DecodeBatch.Row row) {
            if (row.failure() != null) {
                fail(row.failure());
                return;
            }
            try {
                GenerationResult r = row.result();
                long total = System.nanoTime() - queuedAt;
                metrics.completed(target.domain(), by, r, total);
                out.complete(new Served(by, version, r, started - queuedAt, total));
            } finally {
                done();
            }
        }

        private void fail(Throwable t) {
            try {
                String v = version == null ? "none" : version.toString();
                if (t instanceof CancellationException) {
                    metrics.cancelled(target.domain(), v);
                } else {
                    metrics.failed(target.domain(), v);
                }
                out.completeExceptionally(t);
            } finally {
                done();
            }
        }

        private void done() {
            if (loaded != null) {
                release(loaded);
                loaded = null;
            }
            running.decrementAndGet();
            admitted.decrementAndGet();
        }
    }

    private Loaded acquire(AdapterVersion v) {
        Loaded l;
        boolean load = false;
        synchronized (cache) {
            l = cache.get(v);
            if (l == null) {
                l = new Loaded(v);
                cache.put(v, l);
                load = true;
            }
            l.refs++;
        }
        if (load) {
            try {
                if (registry == null) {
                    throw new UnknownModel("no adapter registry");
                }
                Path dir = registry.get(v).orElseThrow(() -> new UnknownModel("adapter version " + v + " no longer exists")).dir();
                l.set.complete(AdapterFiles.loadDetached(dir, model));
            } catch (Throwable t) {
                synchronized (cache) {
                    cache.remove(v, l);
                    l.evicted = true;
                }
                l.set.completeExceptionally(t);
            }
            evictExcess();
        }
        try {
            l.set.join();
        } catch (CompletionException e) {
            release(l);
            throw e.getCause() instanceof RuntimeException re ? re : e;
        }
        return l;
    }

    private void release(Loaded l) {
        AdapterSet toClose = null;
        synchronized (cache) {
            l.refs--;
            if (l.evicted && l.refs == 0 && l.set.isDone() && !l.set.isCompletedExceptionally()) {
                toClose = l.set.join();
            }
        }
        if (toClose != null) {
            toClose.close();
        }
    }

    private void evictExcess() {
        List<AdapterSet> toClose = new ArrayList<>();
        synchronized (cache) {
            Iterator<Map.Entry<AdapterVersion, Loaded>> it = cache.entrySet().iterator();
            while (cache.size() > options.maxLoaded() && it.hasNext()) {
                Loaded l = it.next().getValue();
                if (!l.set.isDone() || l.version.equals(aliases.get(l.version.domain()))) {
                    continue;
                }
                it.remove();
                l.evicted = true;
                if (l.refs == 0 && !l.set.isCompletedExceptionally()) {
                    toClose.add(l.set.join());
                }
            }
        }
        toClose.forEach(AdapterSet::close);
    }

    private int loadedCount() {
        synchronized (cache) {
            return cache.size();
        }
    }

    /** Stops accepting work, lets queued and running requests finish (up to 30 s), frees every adapter. */
    @Override
    public void close() {
        closed = true;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (admitted.get() > 0 && System.nanoTime() < deadline) {
            try {
                Thread.sleep(20); // queued and running requests finish
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        queue.tell(new ServingActor.Stop());
        if (ownSystem != null) {
            ownSystem.terminate();
            try {
                ownSystem.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                // stopping anyway
            }
        }
        List<AdapterSet> toClose = new ArrayList<>();
        synchronized (cache) {
            for (Loaded l : cache.values()) {
                l.evicted = true;
                if (l.refs == 0 && l.set.isDone() && !l.set.isCompletedExceptionally()) {
                    toClose.add(l.set.join());
                }
            }
            cache.clear();
        }
        toClose.forEach(AdapterSet::close);
    }
}
