-- scripts/bench-envoy: sends a different DPoP proof with every request (RFC 9449: a proof is single use).
-- wrk ... -s dpop.lua URL PROOFS_FILE FIRST_LINE   (FIRST_LINE is 1-based; earlier lines were used already)
-- When the pool runs out, requests carry an invalid proof, are refused, and wrk counts them as non-2xx.
local proofs = {}
local next_index = 1

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    proofs[#proofs + 1] = line
  end
  f:close()
  next_index = tonumber(args[2] or "1")
end

function request()
  local proof = proofs[next_index] or "pool-exhausted"
  next_index = next_index + 1
  wrk.headers["DPoP"] = proof
  return wrk.format()
end
