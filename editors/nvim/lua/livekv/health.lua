--- `:checkhealth livekv`: Neovim version and completion path, the server command, whether the
--- `livekv` config is enabled, the running client, the model and the last suggestion's latency.

local M = {}

function M.check()
  local health = vim.health
  local livekv = require('livekv')
  local status = livekv.status()

  health.start('livekv: Neovim')
  local version = tostring(vim.version())
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. version)
  else
    health.error('Neovim ' .. version .. ': livekv needs 0.11 or newer')
  end
  if livekv.config.use_builtin and vim.lsp.inline_completion ~= nil then
    health.ok('ghost text: built-in vim.lsp.inline_completion (Neovim 0.12+)')
    health.info("accept a word / a line, dismiss: inline_completion.get() with livekv's on_accept (the built-in has none)")
  else
    health.ok("ghost text: livekv's own extmarks (Neovim 0.11 path)")
  end

  health.start('livekv: server')
  local cmd = livekv.config.cmd
  if type(cmd) == 'function' then
    health.ok('command: a Lua function (an in-process RPC client)')
  elseif vim.fn.executable(cmd[1]) == 1 then
    health.ok('command: ' .. table.concat(cmd, ' '))
  else
    health.error(('command %q is not executable'):format(cmd[1]), {
      'install the server (pip install livekv) or set `cmd` in require("livekv").setup()',
    })
  end
  if vim.lsp.is_enabled('livekv') then
    health.ok("config: vim.lsp.config.livekv, enabled with vim.lsp.enable('livekv')")
  else
    health.warn("vim.lsp.enable('livekv') is off: no client starts", { 'call require("livekv").setup()' })
  end
  local id = livekv.client_id()
  local client = id and vim.lsp.get_client_by_id(id)
  if not client then
    health.warn('no livekv client running', { 'open a file of the filetypes ' .. table.concat(livekv.config.filetypes, ', ') })
  elseif client:is_stopped() then
    health.error(('client %d stopped'):format(client.id))
  else
    local attached = vim.tbl_keys(client.attached_buffers)
    table.sort(attached)
    health.ok(
      ('client %d running (%s), root %s, attached to buffer(s) %s'):format(
        client.id,
        client.initialized and 'initialized' or 'initializing',
        client.root_dir or '-',
        table.concat(attached, ', ')
      )
    )
  end
  if status.state == 'error' then
    health.error('last error: ' .. (status.message or '?'))
  elseif status.state == 'loading' or status.state == 'starting' then
    health.info('state: ' .. (status.message or status.state))
  else
    health.ok('state: ' .. status.state .. (status.enabled and '' or ' (suggestions toggled off)'))
  end
  if status.model then
    health.ok('model: ' .. status.model)
  else
    health.info('model: not loaded yet')
  end
  if status.latency_ms then
    health.ok(
      ('last suggestion: %d ms (first token %s)'):format(
        status.latency_ms,
        status.first_token_ms and (status.first_token_ms .. ' ms') or '-'
      )
    )
  else
    health.info('last suggestion: none yet')
  end
end

return M
