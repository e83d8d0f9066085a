package dev.morastream.ops.serve;

import dev.morastream.actors.serving.Served;
import dev.morastream.actors.serving.ServingPool;
import static dev.morastream.ops.serve.Responses.error;
import static dev.morastream.ops.serve.Responses.json;

import com.fasterxml.jackson.databind.JsonNode;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.Generator;
import dev.morastream.ops.serve.openai.ErrorBody;
import dev.morastream.ops.serve.openai.ModelList;
import dev.morastream.ops.serve.openai.OpenAiJson;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Supplier;
import org.apache.pekko.NotUsed;
import org.apache.pekko.http.javadsl.model.HttpEntities;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.MediaTypes;
import org.apache.pekko.http.javadsl.model.headers.RawHeader;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.Route;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.stream.BoundedSourceQueue;
import org.apache.pekko.stream.QueueOfferResult;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;

/**
 * The OpenAI endpoints behind {@link HttpApi}'s guards: completions and chat completions (JSON, or
 * server-sent events with {@code stream}) and the model list. A unary request's generations are
 * cancelled when its connection closes or the request timeout passes.
 */
final class OpenAiRoutes extends AllDirectives {
    private final ServingPool pool;
    private final HttpApi.Settings settings;
    private final ChatTemplate template;
    private final Answers answers;

    OpenAiRoutes(ServingPool pool, HttpApi.Settings settings, ChatTemplate template) {
        this.pool = pool;
        this.settings = settings;
        this.template = template;
        this.answers = new Answers(pool.tokenizer());
    }

    /** {@code POST /v1/completions} ({@code chat} false) or {@code /v1/chat/completions}, with its body. */
    Route completion(JsonNode b, boolean chat) {
        CompletionRequest ask = CompletionRequest.parse(b, chat, settings.maxTokens(), settings.maxN(), pool.tokenizer(), template,
                pool.model().config().maxPositionEmbeddings());
        Optional<String> resolved = pool.describe(ask.model);
        if (resolved.isEmpty()) {
            throw new ApiError(404, "invalid_request_error", "model_not_found", "The model '" + ask.model
                    + "' does not exist; GET /v1/models lists the base model, every domain and every adapter version", "model");
        }
        return ask.stream ? stream(ask) : unary(ask, resolved.get());
    }

    /** One generation of a request: which prompt, which candidate. */
    private record Job(int prompt, int candidate, CompletableFuture<Served> served) {}

    /**
     * Every prompt × {@code best_of} candidates as separate pool requests (with seeds {@code seed + c});
     * several candidates run on the exact version the alias named at submission, so a swap cannot mix
     * versions within one answer.
     */
    private Route unary(CompletionRequest ask, String resolved) {
        int top = Math.max(0, ask.logprobs);
        Generator.Scoring scoring = new Generator.Scoring(top, ask.echo, () -> false);
        int total = ask.prompts.size() * ask.bestOf;
        String modelName = total > 1 ? resolved : ask.model;
        List<Job> jobs = new ArrayList<>();
        try {
            for (int p = 0; p < ask.prompts.size(); p++) {
                for (int c = 0; c < ask.bestOf; c++) {
                    jobs.add(new Job(p, c, submit(modelName, ask.prompts.get(p).ids(), ask.cfg.withSeed(ask.cfg.seed() + c), scoring,
                            new ServingPool.Listener() {})));
                }
            }
        } catch (ApiError e) {
            jobs.forEach(j -> j.served().cancel(false));
            throw e;
        }
        CompletableFuture<?>[] all = jobs.stream().map(Job::served).toArray(CompletableFuture[]::new);
        String id = (ask.chat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID();
        long created = System.currentTimeMillis() / 1000;
        AtomicBoolean timedOut = new AtomicBoolean();
        Supplier<HttpResponse> timeout = () -> error(new ApiError(503, "server_error", "timeout", "the request took longer than "
                + settings.requestTimeout().toMillis() / 1000.0 + " s (morastream.http.request-timeout); its generation was cancelled"));
        CompletableFuture<HttpResponse> answer = CompletableFuture.allOf(all).handle((v, err) -> {
            if (timedOut.get()) {
                return timeout.get();
            }
            if (err != null) {
                jobs.forEach(j -> j.served().cancel(false));
                return error(failure(err));
            }
            try {
                return answer(ask, id, created, jobs);
            } catch (RuntimeException e) {
                return error(new ApiError(500, "server_error", null, "building the answer failed: " + e));
            }
        });
        return extractRequest(req -> {
            req.getAttribute(HttpApi.CONNECTION).ifPresent(c -> jobs.forEach(j -> c.add(j.served())));
            return withRequestTimeout(settings.requestTimeout(), r -> {
                timedOut.set(true);
                jobs.forEach(j -> j.served().cancel(false));
                return timeout.get();
            }, () -> completeWithFuture(answer));
        });
    }

    private HttpResponse answer(CompletionRequest ask, String id, long created, List<Job> jobs) {
        String servedBy = jobs.get(0).served().join().servedBy();
        List<List<Served>> candidates = new ArrayList<>();
        for (int p = 0; p < ask.prompts.size(); p++) {
            final int pi = p;
            candidates.add(jobs.stream().filter(j -> j.prompt() == pi).map(j -> j.served().join()).toList());
        }
        return json(200, answers.answer(ask, id, created, candidates, servedBy)).addHeader(RawHeader.create(HttpApi.VERSION_HEADER, servedBy));
    }

    private Route stream(CompletionRequest ask) {
        return extractMaterializer(mat -> extractRequest(req -> {
            Pair<BoundedSourceQueue<ByteString>, Source<ByteString, NotUsed>> q =
                    Source.<ByteString>queue(ask.cfg.maxNewTokens() + 16).preMaterialize(mat);
            BoundedSourceQueue<ByteString> out = q.first();
            String id = (ask.chat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID();
            long created = System.currentTimeMillis() / 1000;
            String[] servedBy = {ask.model};
            ServingPool.Listener listener = new ServingPool.Listener() {
                @Override
                public void onStart(String by) {
                    servedBy[0] = by;
                    if (ask.chat) {
                        send(out, answers.chunk(ask, id, created, by, "", null, true));
                    }
                }

                @Override
                public void onText(String delta) {
                    send(out, answers.chunk(ask, id, created, servedBy[0], delta, null, false));
                }
            };
            CompletableFuture<Served> f;
            try {
                f = submit(ask.model, ask.prompts.get(0).ids(), ask.cfg, Generator.Scoring.NONE, listener);
            } catch (ApiError e) {
                out.complete();
                return complete(error(e));
            }
            req.getAttribute(HttpApi.CONNECTION).ifPresent(c -> c.add(f));
            f.whenComplete((s, err) -> {
                try {
                    if (err != null) {
                        ApiError e = failure(err);
                        send(out, ErrorBody.InStream.of(e.getMessage(), e.type));
                    } else {
                        send(out, answers.chunk(ask, id, created, s.servedBy(), "", s.result().finishReason(), false));
                        if (ask.usageInStream) {
                            send(out, answers.usageChunk(ask, id, created, s.servedBy(), s.result()));
                        }
                    }
                    out.offer(ByteString.fromString("data: [DONE]\n\n"));
                } catch (CancellationException gone) {
                    // the client went away
                } finally {
                    out.complete();
                }
            });
            return complete(HttpResponse.create()
                    .withEntity(HttpEntities.createChunked(MediaTypes.TEXT_EVENT_STREAM.toContentType(), q.second()))
                    .addHeader(RawHeader.create("Cache-Control", "no-cache")));
        }));
    }

    private CompletableFuture<Served> submit(String model, int[] ids, GenerationConfig cfg, Generator.Scoring scoring,
            ServingPool.Listener listener) {
        try {
            return pool.submit(model, ids, cfg, scoring, listener);
        } catch (ServingPool.Overloaded e) {
            throw new ApiError(429, "rate_limit_error", "overloaded", e.getMessage());
        } catch (ServingPool.UnknownModel e) {
            throw new ApiError(404, "invalid_request_error", "model_not_found", e.getMessage(), "model");
        }
    }

    /** Queues one SSE event; throws {@link CancellationException} (aborting the generation) when the client is gone. */
    private static void send(BoundedSourceQueue<ByteString> out, Object event) {
        QueueOfferResult r = out.offer(ByteString.fromString("data: " + OpenAiJson.write(event) + "\n\n"));
        if (r != QueueOfferResult.enqueued()) {
            throw new CancellationException("stream closed: " + r);
        }
    }

    private static ApiError failure(Throwable err) {
        Throwable t = err instanceof CompletionException && err.getCause() != null ? err.getCause() : err;
        if (t instanceof ApiError e) {
            return e;
        }
        if (t instanceof ServingPool.UnknownModel) {
            return new ApiError(404, "invalid_request_error", "model_not_found", t.getMessage(), "model");
        }
        if (t instanceof CancellationException) {
            return new ApiError(503, "server_error", "cancelled", "the generation was cancelled");
        }
        if (t instanceof IllegalArgumentException) {
            return ApiError.badRequest(t.getMessage());
        }
        return new ApiError(500, "server_error", null, "generation failed: " + t);
    }

    /** {@code GET /v1/models}: the base model, every served domain (as its version) and every version. */
    Route models() {
        long created = System.currentTimeMillis() / 1000;
        int ctx = pool.model().config().maxPositionEmbeddings();
        List<ModelList.Model> data = new ArrayList<>();
        String base = pool.baseName();
        data.add(ModelList.Model.of(base, base, null, created, ctx, null));
        Optional<AdapterRegistry> reg = pool.registry();
        if (reg.isPresent()) {
            try {
                for (String d : reg.get().domains()) {
                    pool.serving(d).ifPresent(v -> data.add(ModelList.Model.of(d, v.toString(), base, created, ctx, v.toString())));
                    for (AdapterRegistry.Entry e : reg.get().versions(d)) {
                        String v = e.version().toString();
                        data.add(ModelList.Model.of(v, v, base, e.created().getEpochSecond(), ctx, v));
                    }
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return complete(json(200, ModelList.of(data)));
    }
}
